"""Range-test every setup of a grid, write the grid with the suggested learning rates, then sweep it.

    python benchmarks/lr_then_sweep.py GRID --out DIR [--set KEY=VALUE ...] [--gpus 0,1] [--lr-workers 2]
                                       [--workers 4] [--steps 200] [--axis setup] [--at AXIS=LABEL] [--no-sweep]

Issue 20 asks that a study's learning rates come from the range test rather than a guess. For each value of
the grid's `--axis` (default `setup`: one model + method each) this runs `python -m studio lr-find` on that
setup's config (the grid's first value on every other axis, e.g. the first seed), each in its own process,
`--lr-workers` at a time on each GPU, and writes:

    DIR/lr/<setup>.json     the range test (rates, losses, smoothed curve, suggestion, cost, device)
    DIR/grid.yaml           the grid with each setup's train.learning_rate set to its suggestion
    DIR/lr_find.csv         setup, method, suggested rate, rule, caveats, seconds, steps

then `python -m studio sweep DIR/grid.yaml` over the same GPUs (each run its own process) into the runs
folder (STUDIO_RUNS_DIR). `python -m studio report DIR/grid.yaml --set ...` afterwards writes the report.
The `--set` overrides go to both the range tests and the sweep (e.g. a local copy of the data).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio.lr_find import suggest  # noqa: E402
from studio.presets import GRIDS_DIR, resolve  # noqa: E402
from studio.sweep import Grid  # noqa: E402


def setup_configs(grid: Grid, axis: str, at: dict[str, str]) -> dict[str, object]:
    """axis value -> the config of the point with the `at` values (AXIS -> label) on the axes they name and the
    first value on every other axis."""
    others = {a: str(values[0][0]) for a, values in grid.axes.items() if a != axis}
    unknown = set(at) - set(others)
    if unknown:
        raise SystemExit(f"--at: the grid has no axis {', '.join(sorted(unknown))}; its axes: {', '.join(others)}")
    others.update(at)
    return {p.labels[axis]: p.config for p in grid.points()
            if all(str(p.labels[a]) == v for a, v in others.items())}  # fmt: skip


def slug(label: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in str(label).lower()).split())


def range_tests(configs: dict[str, object], out: Path, gpus: list[str], per_gpu: int, steps: int) -> dict[str, dict]:
    """One `lr-find` process per setup, `per_gpu` at a time on each GPU; setup -> its JSON."""
    (out / "lr").mkdir(parents=True, exist_ok=True)
    slots = [g for g in gpus for _ in range(per_gpu)]
    free = list(slots)

    def one(label: str) -> dict:
        name = slug(label)
        preset = out / "lr" / f"{name}.yaml"
        configs[label].to_yaml(preset, header=f"range test of setup {label!r}")
        gpu = free.pop()
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu} if gpu else dict(os.environ)
        try:
            cmd = [sys.executable, "-m", "studio", "lr-find", str(preset), "--steps", str(steps),
                   "--json", str(out / "lr" / f"{name}.json")]  # fmt: skip
            with open(out / "lr" / f"{name}.log", "w") as log:
                code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        finally:
            free.append(gpu)
        if code != 0:
            raise SystemExit(f"lr-find failed for {label}: see {out / 'lr' / f'{name}.log'}")
        result = json.loads((out / "lr" / f"{name}.json").read_text())
        print(f"  {label}: {result['suggested']:.2g} ({result['rule']}, {result['seconds']:.0f} s)", flush=True)
        return result

    with ThreadPoolExecutor(len(slots)) as pool:
        return dict(zip(configs, pool.map(one, configs), strict=True))


def min_tenth(result: dict) -> float:
    """A tenth of the rate at the smoothed loss's minimum: lr-find's own rule (`lr_find.suggest`) on the curve a
    range test's JSON holds (JSON written before issue 20 suggested the steepest descent instead)."""
    return suggest(result["rates"], result["smoothed"])[0]


def chosen_rate(result: dict, rule: str) -> float:
    """steepest: lr-find's suggestion as it printed it; lower: the lower of that and min/10."""
    return result["suggested"] if rule == "steepest" else min(result["suggested"], min_tenth(result))


def write_grid(source: Path, axis: str, results: dict[str, dict], out: Path, rule: str = "steepest") -> Path:
    """The grid file as written, each setup's learning rate replaced by its range test's suggestion."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for label, result in results.items():
        data["axes"][axis][label]["train.learning_rate"] = float(f"{chosen_rate(result, rule):.2g}")
    path = out / "grid.yaml"
    header = (f"# {source.name} with each {axis}'s train.learning_rate from the range test "
              f"(benchmarks/lr_then_sweep.py, {time.strftime('%Y-%m-%d')}): see lr_find.csv\n")  # fmt: skip
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=120), encoding="utf-8")
    with open(out / "lr_find.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([axis, "model", "method", "suggested", "rule", "min/10", "chosen", "steps", "seconds", "device",
                    "caveats"])  # fmt: skip
        for label, r in results.items():
            w.writerow([label, r["model"], r["method"], f"{r['suggested']:.3g}", r["rule"], f"{min_tenth(r):.3g}",
                        f"{chosen_rate(r, rule):.2g}", r["steps"],
                        f"{r['seconds']:.0f}", r["device"], " | ".join(r["caveats"])])  # fmt: skip
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid")
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--axis", default="setup")
    ap.add_argument(
        "--at",
        action="append",
        default=[],
        metavar="AXIS=LABEL",
        help="range-test at this value of another axis (default: its first), e.g. seed=43",
    )
    ap.add_argument("--gpus", default="", help="comma list of GPU indices (default: none, the CPU)")
    ap.add_argument("--lr-workers", type=int, default=1, help="range tests at a time on each GPU")
    ap.add_argument("--workers", type=int, default=1, help="grid runs at a time on each GPU")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument(
        "--rule",
        choices=["steepest", "lower"],
        default="steepest",
        help="steepest: lr-find's suggestion; lower: the lower of it and a tenth of the minimum's rate",
    )
    ap.add_argument("--reuse", action="store_true", help="read DIR/lr/*.json of an earlier call instead of testing")
    args = ap.parse_args()
    out = Path(args.out)
    source = resolve(args.grid, GRIDS_DIR, "grid")
    grid = Grid.from_yaml(source)
    if args.set:
        grid.base = grid.base.with_overrides(args.set)
    gpus = [g for g in args.gpus.split(",") if g] or [""]
    configs = setup_configs(grid, args.axis, dict(a.split("=", 1) for a in args.at))
    print(f"range tests: {len(configs)} setups of {grid.name}, {args.steps} steps each", flush=True)
    if args.reuse:
        results = {label: json.loads((out / "lr" / f"{slug(label)}.json").read_text()) for label in configs}
    else:
        results = range_tests(configs, out, gpus, args.lr_workers, args.steps)
    path = write_grid(source, args.axis, results, out, args.rule)
    print(f"grid with the suggested rates: {path}", flush=True)
    if args.no_sweep:
        return 0
    sets = [x for s in args.set for x in ("--set", s)]
    cmd = [sys.executable, "-m", "studio", "sweep", str(path), *sets, "--workers", str(args.workers)]
    cmd += ["--gpus", args.gpus] if args.gpus else []
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
