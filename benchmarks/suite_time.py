"""Wall and CPU time of the whole test suite, as CI runs it, in a fresh clone of a branch.

    python benchmarks/suite_time.py --out benchmarks/results/suite_time/NAME [--branch suite-time]
                                    [--repo /work/main] [-- PYTEST ARGS]

Clones the branch into a temporary folder (CI's fresh clone: no caches, no built files), runs
`python -m pytest -q` there (plus any arguments after `--`, e.g. `-n 0` for one process), and writes
``suite_time.json`` (wall seconds, user and system CPU seconds of pytest and every process it waited for, the
pass/fail line, pytest's own total), ``environment.json`` (CPU, cores, torch, the date, the load average sampled
every 30 s during the run) and ``pytest.log`` (its output: the 30 slowest tests). On a shared machine the wall
time depends on the other load; the CPU seconds much less so: read both, with the load beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _sample_load(samples: list, stop: threading.Event) -> None:
    while True:
        samples.append({"t": round(time.time(), 1), "load1": os.getloadavg()[0]})
        if stop.wait(30):
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--branch", default="suite-time")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", "-b", args.branch, args.repo, str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        samples: list = []
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_load, args=(samples, stop), daemon=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.time()
        sampler.start()
        with (args.out / "pytest.log").open("w") as log:
            code = subprocess.run([sys.executable, "-m", "pytest", "-q", *args.pytest_args], cwd=clone, env=env,
                                  stdout=log, stderr=subprocess.STDOUT).returncode  # fmt: skip
        wall = time.time() - start
        stop.set()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = (args.out / "pytest.log").read_text()
    final = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    loads = [s["load1"] for s in samples]
    result = {
        "command": " ".join(["python -m pytest -q", *args.pytest_args]),
        "branch": args.branch,
        "commit": commit.strip(),
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "user_cpu_seconds": round(after.ru_utime - before.ru_utime, 1),
        "system_cpu_seconds": round(after.ru_stime - before.ru_stime, 1),
        "pytest_line": final[-1].strip("= ") if final else None,
    }
    environment = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "pytest_xdist": _version("xdist"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start)),
        "load1_median": sorted(loads)[len(loads) // 2] if loads else None,
        "load1_min_max": [min(loads), max(loads)] if loads else None,
        "load_samples": samples,
        "note": "a machine shared with other work: the wall time depends on its load (load1 above)",
    }
    (args.out / "suite_time.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "environment.json").write_text(json.dumps(environment, indent=1) + "\n")
    print(json.dumps(result))


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


if __name__ == "__main__":
    main()
