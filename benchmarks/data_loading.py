"""Data intake speed and memory: how long `load_raw` and `prepare` take on a big CSV and a big JSON Lines file,
and how much memory they need.

    python3 benchmarks/data_loading.py --label before --repeats 3 --work /tmp/data_bench
    python3 benchmarks/data_loading.py --label after --repeats 3 --work /tmp/data_bench
    python3 benchmarks/data_loading.py --compare before after

Inputs (made in --work, seeded, so every run reads the same bytes; reused when already there with the size
their manifest records): ``reviews.csv``, ~50 MB of ``text,label`` rows (movie-review sentences of varied
length, some with commas and quotes, a few with newlines inside the quoted text, some non-ASCII), and
``reviews.jsonl``, 200,000 ``{"text", "label"}`` objects of the same kind; labels pos / neg / neutral.
Both are written with the csv / json standard library. They are hashed before timing, so they sit in the
page cache: disk speed is not measured.

Stages, each in a fresh process per measurement (a warm process would flatter the later rows):
``load_raw`` = ``studio.datasource.load_raw(DataConfig(source=path))``; ``prepare`` =
``studio.data.prepare(DataConfig(source=path), seed=42)`` (its own load included). Before the clock starts,
the child imports ``datasets`` (hence pyarrow and pandas) and the studio modules; that import time is
reported apart. Per measurement: the stage's wall seconds (perf_counter) and CPU seconds (process_time),
the peak RSS of the process (ru_maxrss), that peak less the RSS after the imports, and what the stage
returned (rows, and prepare's fingerprint: "after" should return the same). Over --repeats runs
(interleaved): median and min seconds, max peak RSS.

The machine may be shared: before each measurement the script waits (up to --quiet-wait seconds, default
300) until other processes use under a quarter of a core, and it records the 1/5/15-minute load averages at
the start and end of each measurement and the cores the rest of the machine kept busy during the stage
(from /proc/stat): a noisy run shows there. CPU seconds suffer less from a busy machine than wall seconds.

Writes ``benchmarks/results/data_loading/<label>.json`` and prints a Markdown table. ``--compare A B``
writes ``benchmarks/results/data_loading/README.md``: A against B with the ratios (B's run pending while
``B.json`` is missing).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "data_loading"
STAGES = ("load_raw", "prepare")
SEED = 20240611
GENERATOR = 1  # bump when the texts change: the work files are then made anew
CSV_BYTES = 50_000_000
JSONL_ROWS = 200_000
CHILD_TIMEOUT_S = 1800
QUIET_CORES = 0.25  # a measurement starts once the other processes use less than this many cores (3 s sample)
# ---- the texts -----------------------------------------------------------------------------------------
TITLES = ("The Long Night", "Amélie", "Harbor Lights", "Seven Winters", "Léon", "Paper Moon Rising",
          "The Quiet Hour", "Dust & Thunder", "Midnight Run", "A Town Called Hope", "Blue Velvet Sky",
          "The Last Orchard", "Crimson Tide II", "Götterdämmerung Express", "North by Northeast")  # fmt: skip
NAMES = ("Hanks", "Streep", "the lead actor", "the director", "Nolan", "the supporting cast", "Ms. Okafor",
         "the composer", "Zoë Kravitz", "the screenwriter", "José García", "the child actor")  # fmt: skip
NOUNS = ("plot", "pacing", "score", "dialogue", "ending", "cinematography", "third act", "script", "editing",
         "villain", "soundtrack", "set design", "premise", "twist", "runtime")  # fmt: skip
ADJ = {
    "pos": ("brilliant", "moving", "gorgeous", "sharp", "unforgettable", "witty", "tender", "gripping"),
    "neg": ("dull", "clumsy", "bloated", "lifeless", "predictable", "grating", "incoherent", "tedious"),
    "neutral": ("fine", "competent", "uneven", "serviceable", "ordinary", "conventional", "mixed", "passable"),
}
QUOTES = ("a masterpiece", "the film of the year", "a mess", "two hours I won't get back", "quietly radiant",
          "fine, I guess", "pure popcorn")  # fmt: skip
PLAIN = (  # nothing a CSV writer must quote
    "{title} is {adj} and {name} is {adj2} in it.",
    "I thought the {noun} was {adj}.",
    "{name}'s performance is {adj}; the {noun} is {adj2}.",
    "Honestly? {adj_cap}.",
    "The {noun} is {adj} from the first scene to the last.",
    "Expect a {adj} {noun} and a {adj2} {noun2}.",
    "{stars}/10 for a {adj} {noun}.",
    "It’s {adj} — the {noun} especially.",
)
PUNCTUATED = (  # commas and double quotes: the row must be quoted
    "The {noun} was {adj}, but the {noun2} felt {adj2}.",
    "One critic called it \"{quote}\", and honestly, I'd say it's {adj}.",
    "If you liked {title}, you'll find this {adj} — especially the {noun}.",
    'My friend said "{quote}" after the {noun}, which felt {adj2} to me.',
    "Watched it twice: the {noun}, the {noun2}, the {noun3}; all {adj}.",
    "It’s {adj}, {adj2}, and a bit long at {minutes} minutes.",
)
LABEL_WEIGHTS = (("pos", 0.45), ("neg", 0.40), ("neutral", 0.15))


def _sentence(rng: random.Random, label: str) -> str:
    """One review sentence, mostly in the tone of `label`."""
    tone = label if rng.random() < 0.8 else rng.choice(list(ADJ))
    adj, adj2 = rng.choice(ADJ[tone]), rng.choice(ADJ[label])
    nouns = rng.sample(NOUNS, 3)
    return rng.choice(PUNCTUATED if rng.random() < 0.12 else PLAIN).format(
        title=rng.choice(TITLES), name=rng.choice(NAMES), noun=nouns[0], noun2=nouns[1], noun3=nouns[2], adj=adj,
        adj2=adj2, adj_cap=adj.capitalize(), quote=rng.choice(QUOTES), minutes=rng.randint(85, 190),
        stars=rng.randint(1, 10),
    )  # fmt: skip


def make_row(rng: random.Random) -> tuple[str, str]:
    """(text, label): 1 to ~60 sentences (mostly a few, a long tail); ~0.5 % in paragraphs (newlines)."""
    label = rng.choices([x for x, _ in LABEL_WEIGHTS], weights=[w for _, w in LABEL_WEIGHTS])[0]
    n = min(60, 1 + int(rng.expovariate(1 / 3.5)))
    sentences = [_sentence(rng, label) for _ in range(n)]
    if n > 2 and rng.random() < 0.005:
        cut = rng.randint(1, n - 1)
        text = " ".join(sentences[:cut]) + "\n\n" + " ".join(sentences[cut:])
    else:
        text = " ".join(sentences)
    if rng.random() < 0.002:
        text += " 👍" if label == "pos" else " 👎"
    return text, label


# ---- the work files ------------------------------------------------------------------------------------
def _write_csv(path: Path, rng: random.Random, target_bytes: int) -> int:
    """Rows until the file holds at least `target_bytes`; returns the number of rows."""
    rows, size = 0, 0
    with path.open("wb") as out:
        out.write(b"text,label\r\n")
        while size < target_bytes:
            chunk = io.StringIO()
            writer = csv.writer(chunk)
            for _ in range(1000):
                writer.writerow(make_row(rng))
            data = chunk.getvalue().encode("utf-8")
            out.write(data)
            size += len(data)
            rows += 1000
    return rows


def _write_jsonl(path: Path, rng: random.Random, rows: int) -> int:
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for _ in range(rows):
            text, label = make_row(rng)
            out.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    return rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def work_file(work: Path, name: str, size: int) -> dict:
    """The work file `name` (reviews.csv / reviews.jsonl), made unless its manifest says it is there already."""
    path, manifest = work / name, work / f"{name}.manifest.json"
    spec = {"generator": GENERATOR, "seed": SEED, "size": size}
    if path.is_file() and manifest.is_file():
        meta = json.loads(manifest.read_text())
        if meta["spec"] == spec and path.stat().st_size == meta["bytes"]:
            return {**meta, "path": str(path), "reused": True, "sha256": _sha256(path)}
    rng = random.Random(f"{SEED}:{name}")
    t0 = time.perf_counter()
    rows = _write_csv(path, rng, size) if name.endswith(".csv") else _write_jsonl(path, rng, size)
    print(f"made {path} ({rows:,} rows) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    meta = {"spec": spec, "rows": rows, "bytes": path.stat().st_size}
    manifest.write_text(json.dumps(meta, indent=2))
    return {**meta, "path": str(path), "reused": False, "sha256": _sha256(path)}


# ---- one measurement (the child process) ---------------------------------------------------------------
def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _cpu_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot, all cores (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def child(stage: str, path: str) -> dict:
    """Import, then run `stage` on `path` once; what it cost and what it returned."""
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    import datasets  # noqa: F401  (and with it pyarrow and pandas: the stage's own lazy imports, made up front)

    from studio.config import DataConfig
    from studio.data import prepare
    from studio.datasource import load_raw

    import_s = time.perf_counter() - t0
    baseline = _maxrss_mb()
    cfg = DataConfig(source=path)
    busy0, c0, t1 = _cpu_busy_s(), time.process_time(), time.perf_counter()
    result = load_raw(cfg) if stage == "load_raw" else prepare(cfg, seed=42)
    seconds, cpu_s = time.perf_counter() - t1, time.process_time() - c0
    others = max(0.0, (_cpu_busy_s() - busy0 - cpu_s) / seconds)  # cores the rest of the machine kept busy
    peak = _maxrss_mb()
    if stage == "load_raw":
        returned = {"rows": {k: v.num_rows for k, v in result.items()}, "columns": result["train"].column_names}
    else:
        returned = {"rows": result.report["rows"], "rows_loaded": result.report["rows_loaded"],
                    "label_names": result.label_names, "fingerprint": result.fingerprint}  # fmt: skip
    return {"seconds": seconds, "cpu_s": cpu_s, "import_s": import_s, "baseline_rss_mb": baseline,
            "peak_rss_mb": peak, "rss_delta_mb": peak - baseline, "loadavg_start": list(load_start),
            "loadavg_end": list(os.getloadavg()), "others_busy_cores": others, "returned": returned}  # fmt: skip


def wait_quiet(max_wait_s: float) -> tuple[float, float]:
    """Wait (at most `max_wait_s`) until other processes use under QUIET_CORES cores; (seconds waited, last
    sample's busy cores)."""
    t0 = time.perf_counter()
    while True:
        busy0 = _cpu_busy_s()
        time.sleep(3)
        busy = (_cpu_busy_s() - busy0) / 3
        waited = time.perf_counter() - t0
        if busy < QUIET_CORES or waited >= max_wait_s:
            return waited, busy


def measure(stage: str, path: str, scratch: Path, quiet_wait_s: float) -> dict:
    """One fresh process running `stage` on `path` (once the machine is quiet, or waited long enough)."""
    waited, busy = wait_quiet(quiet_wait_s) if quiet_wait_s > 0 else (0.0, None)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(scratch / "hf_datasets_cache"), "PYTHONPATH": str(ROOT),
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", stage, path], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)  # fmt: skip
    process_s = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{stage} on {path} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    run = json.loads(done.stdout.strip().splitlines()[-1])
    return {**run, "process_s": process_s, "waited_for_quiet_s": waited, "busy_cores_before": busy}


def summarise(runs: list[dict]) -> dict:
    seconds = [r["seconds"] for r in runs]
    returned = [json.dumps(r["returned"], sort_keys=True) for r in runs]
    return {
        "seconds_median": statistics.median(seconds), "seconds_min": min(seconds),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
        "import_s_median": statistics.median(r["import_s"] for r in runs),
        "process_s_median": statistics.median(r["process_s"] for r in runs),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "rss_delta_mb_max": max(r["rss_delta_mb"] for r in runs),
        "loadavg_1m_max": max(max(r["loadavg_start"][0], r["loadavg_end"][0]) for r in runs),
        "others_busy_cores_max": max(r["others_busy_cores"] for r in runs),
        "same_result_every_run": len(set(returned)) == 1, "returned": runs[0]["returned"], "runs": runs,
    }  # fmt: skip


# ---- the machine ---------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def machine() -> dict:
    meminfo = Path("/proc/meminfo")
    total = next((line.split()[1] for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")), None)
    return {
        "cpu_model": _cpu_model(), "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(int(total) / 1024**2, 1) if total else None, "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: metadata.version(name) for name in ("pandas", "pyarrow", "datasets", "numpy")},
        "git_commit": _git("rev-parse", "HEAD"), "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
        "studio_dirty": bool(_git("status", "--porcelain", "--", "studio")),
    }  # fmt: skip


# ---- a run ---------------------------------------------------------------------------------------------
def run(label: str, repeats: int, work: Path, results: Path, sizes: tuple[int, int], quiet_wait_s: float) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    files = {"csv": work_file(work, "reviews.csv", sizes[0]), "jsonl": work_file(work, "reviews.jsonl", sizes[1])}
    out = {"label": label, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "repeats": repeats, "machine": machine(),
           "loadavg_start": list(os.getloadavg()), "quiet_wait_s": quiet_wait_s, "quiet_cores": QUIET_CORES,
           "files": files, "results": {}}  # fmt: skip
    runs: dict[tuple[str, str], list[dict]] = {}
    for i in range(repeats):  # interleaved: a slow spell of the machine spreads over all rows
        for kind, info in files.items():
            for stage in STAGES:
                r = measure(stage, info["path"], work, quiet_wait_s)
                runs.setdefault((kind, stage), []).append(r)
                _progress(f"[{i + 1}/{repeats}] {kind:5} {stage:8}", r)
    for (kind, stage), rs in runs.items():
        out["results"].setdefault(kind, {})[stage] = summarise(rs)
    out["loadavg_end"] = list(os.getloadavg())
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{label}.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(table(out))
    return out


def _progress(what: str, r: dict) -> None:
    print(f"{what} {r['seconds']:7.2f} s  CPU {r['cpu_s']:6.2f} s  peak {r['peak_rss_mb']:5.0f} MB  others "
          f"{r['others_busy_cores']:.2f} cores  (waited {r['waited_for_quiet_s']:.0f} s)", file=sys.stderr)  # fmt: skip


def _file_line(kind: str, info: dict) -> str:
    return f"{kind}: {info['bytes'] / 1e6:.1f} MB, {info['rows']:,} rows"


def table(res: dict) -> str:
    head = ("| file | stage | median s | min s | CPU s (median) | import s (median) | peak RSS MB (max) | "
            "RSS over post-import MB (max) | others' CPU, cores (max) | 1-min load (max) |\n"
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")  # fmt: skip
    lines = [head]
    for kind, stages in res["results"].items():
        for stage, s in stages.items():
            lines.append(
                f"| {_file_line(kind, res['files'][kind])} | {stage} | {s['seconds_median']:.2f} | "
                f"{s['seconds_min']:.2f} | {s['cpu_s_median']:.2f} | {s['import_s_median']:.2f} | "
                f"{s['peak_rss_mb_max']:.0f} | {s['rss_delta_mb_max']:.0f} | {s['others_busy_cores_max']:.2f} | "
                f"{s['loadavg_1m_max']:.2f} |"
            )
    return "\n".join(lines)


# ---- compare -------------------------------------------------------------------------------------------
def _about(res: dict) -> str:
    m = res["machine"]
    return (f"`{res['label']}`: commit `{m['git_commit'][:10]}`{' (studio/ modified)' if m['studio_dirty'] else ''}, "
            f"{res['when']}, {m['cpu_model']}, {m['cores_usable']} cores, Python {m['python']}, pandas {m['pandas']}, "
            f"pyarrow {m['pyarrow']}, datasets {m['datasets']}; {res['repeats']} runs each; 1-min load "
            f"{res['loadavg_start'][0]:.2f} at start, {res['loadavg_end'][0]:.2f} at end; other processes kept up to "
            f"{_noise(res):.2f} cores busy during a stage"
            + (" (**a noisy run**: the machine was shared; wall seconds are inflated, CPU seconds and the minimum "
               "less so)" if _noise(res) > QUIET_CORES else ""))  # fmt: skip


def _noise(res: dict) -> float:
    return max(s.get("others_busy_cores_max", 0.0) for stages in res["results"].values() for s in stages.values())


def _ratio(a: float, b: float) -> str:
    return f"{b / a:.2f}×" if a else "–"


COMPARED = (("seconds_median", "seconds (median)", ".2f"), ("seconds_min", "seconds (min)", ".2f"),
            ("cpu_s_median", "CPU seconds (median)", ".2f"), ("peak_rss_mb_max", "peak RSS MB (max)", ".0f"),
            ("rss_delta_mb_max", "RSS over post-import MB (max)", ".0f"))  # fmt: skip


def compare_table(a: dict, b: dict) -> str:
    """One row per file, stage and measure: A, B and B / A; then whether each stage returned the same."""
    la, lb = a["label"], b["label"]
    lines = [f"| file | stage | measure | {la} | {lb} | {lb} ÷ {la} |", "|---|---|---|--:|--:|--:|"]
    same = []
    for kind, stages in a["results"].items():
        for stage, x in stages.items():
            y = b["results"].get(kind, {}).get(stage)
            if y is None:
                continue
            for key, name, fmt in COMPARED:
                lines.append(
                    f"| {kind} | {stage} | {name} | {x[key]:{fmt}} | {y[key]:{fmt}} | {_ratio(x[key], y[key])} |"
                )
            same.append(f"{kind} {stage}: {'yes' if x['returned'] == y['returned'] else '**no**'}")
    return (
        "\n".join(lines) + "\n\nSame result (rows; for prepare also labels and fingerprint): " + "; ".join(same) + "."
    )


def _next_command(a: dict, label_a: str, label_b: str) -> str:
    work = Path(a["files"]["csv"]["path"]).parent
    script = "python3 benchmarks/data_loading.py"
    run_b = f"{script} --label {label_b} --repeats {a['repeats']} --work {work}"
    return f"{run_b} && {script} --compare {label_a} {label_b}"


def compare(label_a: str, label_b: str, results: Path) -> str:
    """Write README.md: `label_a` against `label_b`, or `label_a` alone with `label_b` pending."""
    a = json.loads((results / f"{label_a}.json").read_text())
    path_b = results / f"{label_b}.json"
    b = json.loads(path_b.read_text()) if path_b.is_file() else None
    files = "; ".join(_file_line(k, v) for k, v in a["files"].items())
    parts = [
        "# Data intake: load_raw and prepare on a big CSV and JSON Lines file",
        "Made by `benchmarks/data_loading.py` (its docstring says what is measured). Inputs: " + files + ". "
        "Seconds: the stage alone, median of fresh processes (imports excluded). Peak MB: the process's peak RSS "
        "(max over runs); Δ MB: that peak less the RSS after importing datasets and the studio.",
        "- " + _about(a),
    ]
    if b is None:
        parts += ["## " + label_a, table(a), f"## {label_b}: pending",
                  f"The `{label_b}` run has not been made yet. To make it, and this page with both:\n\n"
                  f"    {_next_command(a, label_a, label_b)}"]  # fmt: skip
    else:
        same_files = all(a["files"][k]["sha256"] == b["files"].get(k, {}).get("sha256") for k in a["files"])
        parts[-1] += "\n- " + _about(b)
        parts += [f"Same input files (sha256): {'yes' if same_files else '**no**: the numbers do not compare'}. "
                  f"Ratios are {label_b} ÷ {label_a}: below 1 is faster / smaller. With other processes "
                  "busy (see above) wall seconds swell most; CPU seconds and the minimum less so.",
                  "## Compared", compare_table(a, b), "## " + label_a, table(a), "## " + label_b, table(b)]  # fmt: skip
    text = "\n\n".join(parts) + "\n"
    (results / "README.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", help="names the results file: before, after, ...")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, help="folder for the input files (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--csv-bytes", type=int, default=CSV_BYTES, help=argparse.SUPPRESS)
    parser.add_argument("--jsonl-rows", type=int, default=JSONL_ROWS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=300,
        metavar="S",
        help="before each measurement wait up to S seconds for the machine to be idle (0: don't)",
    )
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="write README.md comparing A.json and B.json")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    if args.compare:
        print(compare(*args.compare, args.results))
        return 0
    if not args.label:
        parser.error("--label is needed (or --compare A B)")
    work = args.work or Path(tempfile.mkdtemp(prefix="data_bench_"))
    try:
        run(args.label, args.repeats, work, args.results, (args.csv_bytes, args.jsonl_rows), args.quiet_wait)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
