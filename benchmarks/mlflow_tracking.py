"""What MLflow tracking (studio/tracking.py) costs a run: on its training loop, at its end, and with the server down.

    python benchmarks/mlflow_tracking.py RUN_FOLDER [--server PATH_TO_MLFLOW] [--repeats 3]

RUN_FOLDER is a finished run (e.g. runs/<id> of the quick demo: MiniLM-L6 full fine-tune, ~88 MB). It is copied
into a scratch runs folder; a local MLflow server (the full package's `mlflow` command, --server; SQLite store,
artifacts proxied to a folder) is started, and each repeat mirrors the copy into a new MLflow run, as a run does:

- observe: the run's recorded events (metrics.jsonl) through `Tracker.observe`, the call a training run makes
  for each event on its own thread (time per event: what tracking adds to training);
- finish: eval.json's numbers, results files, plots (HTML and PNGs) and the model folder uploaded, the run
  ended (`Tracker.finish`: the time a run's end waits for MLflow);
- down: a tracker pointed at a port nothing listens on (time to the warning; the run would go on).

Writes benchmarks/results/mlflow_tracking/result.json (every repeat, medians, environment, load averages).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio.config import RunConfig  # noqa: E402
from studio.events import parse  # noqa: E402
from studio.hardware import cpu_name  # noqa: E402
from studio.registry import Registry  # noqa: E402
from studio.tracking import LINK_FILE, Tracker  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "mlflow_tracking"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: str, folder: Path) -> tuple[subprocess.Popen, str, float]:
    port, t0 = free_port(), time.perf_counter()
    server = subprocess.Popen(
        [command, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri",
         f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "art")],
        stdout=open(folder / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).close()
            return server, url, time.perf_counter() - t0
        except OSError:
            if server.poll() is not None:
                raise SystemExit((folder / "server.log").read_text()[-3000:]) from None
            time.sleep(0.3)


def one(url: str, registry: Registry, run_id: str, config: RunConfig, events: list) -> dict:
    run_dir = registry.run_dir(run_id)
    (run_dir / LINK_FILE).unlink(missing_ok=True)  # a new MLflow run each repeat
    notes: list[str] = []
    tracker = Tracker(url, run_id, run_dir, lambda e: notes.append(getattr(e, "message", "")))
    tracker.start(config)
    t0 = time.perf_counter()
    for event in events:
        tracker.observe(event)
    observe = time.perf_counter() - t0
    t0 = time.perf_counter()
    tracker.finish("completed", registry.summary(run_id), registry)
    finish = time.perf_counter() - t0
    assert tracker.failed is None, tracker.failed
    return {"events": len(events), "observe_us_per_event": observe / len(events) * 1e6, "finish_s": finish,
            "load": os.getloadavg()}  # fmt: skip


def down(registry: Registry, run_id: str, config: RunConfig) -> float:
    notes: list[str] = []
    tracker = Tracker(f"http://127.0.0.1:{free_port()}", run_id, registry.run_dir(run_id), lambda e: notes.append(1))
    t0 = time.perf_counter()
    tracker.start(config)
    tracker.finish("completed", None, registry)
    assert tracker.failed and notes
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--server", default=os.environ.get("STUDIO_MLFLOW_SERVER") or shutil.which("mlflow"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mlflow-bench-"))
    registry = Registry(scratch / "runs")
    run_id = args.run_folder.resolve().name
    shutil.copytree(args.run_folder, registry.run_dir(run_id), ignore=shutil.ignore_patterns(LINK_FILE, "STOP"))
    config = RunConfig.from_yaml(registry.run_dir(run_id) / "config.yaml")
    lines = (registry.run_dir(run_id) / "metrics.jsonl").read_text().splitlines()
    events = [e for e in (parse(json.loads(line)) for line in lines) if e is not None]
    server, url, startup = start_server(args.server, scratch)
    try:
        repeats = [one(url, registry, run_id, config, events) for _ in range(args.repeats)]
        downs = [down(registry, run_id, config) for _ in range(args.repeats)]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    model_mb = sum(p.stat().st_size for p in registry.run_dir(run_id).rglob("*") if p.is_file()) / 2**20
    import mlflow
    import torch

    result = {
        "run": run_id, "run_folder_mb": round(model_mb, 1), "server_startup_s": round(startup, 2),
        "median_observe_us_per_event": round(statistics.median(r["observe_us_per_event"] for r in repeats), 2),
        "median_finish_s": round(statistics.median(r["finish_s"] for r in repeats), 2),
        "median_down_warning_s": round(statistics.median(downs), 3), "repeats": repeats, "down_s": downs,
        "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "torch": torch.__version__, "mlflow_client": mlflow.__version__,
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_after": os.getloadavg(),
                        "note": "shared machine: other jobs ran at the same time (see the load averages)"},
    }  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("repeats",)}, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
