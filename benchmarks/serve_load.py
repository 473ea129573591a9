"""Load test of the prediction service (`python -m studio serve`): concurrent clients on loopback, bounded in time.

    python benchmarks/serve_load.py --runs-dir RUNS --run RUN_ID --out benchmarks/results/serve_load \
        [--clients 50] [--seconds 60] [--repeats 3] [--batching queue,lock,queue:8] [--texts-per-request 1] [--onnx]

For each repeat and each batching mode (interleaved: queue, lock, queue, lock, ...) it starts the service as a
subprocess on a free loopback port, waits for GET /health to say ready, sends 20 warm-up requests, then runs
--clients concurrent clients (asyncio + httpx, one connection each, in this process) for --seconds: each posts
/predict with --texts-per-request of the run's own test texts (its predictions.parquet, in turn) and sends the
next as soon as the answer comes (a closed loop: 50 clients means 50 requests in flight). Every answer is
checked: status 200 and one prediction per text; anything else (or no answer) counts as an error. The service is
then stopped (SIGINT) and the next one started.

Reports per run: requests, texts, errors, requests/s, texts/s, latency p50 / p95 / p99 / max (ms), and the load
average sampled every 5 s while the clients ran (the machine is shared: other work shows there). Writes
``serve_load.csv`` (one row per repeat and mode), ``serve_load.md`` (medians over repeats) and
``environment.json`` (CPU, cores, torch, date, the load averages) to --out.

The clients run on the same cores as the service (on loopback there is no other machine): their own CPU time,
parsing JSON and keeping 50 connections, is taken from the model's.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_texts(runs_dir: Path, run_id: str) -> list[str]:
    import pandas as pd

    frame = pd.read_parquet(runs_dir / run_id / "predictions.parquet")
    return frame[frame["split"] == "test"]["text"].tolist()


def start(args: argparse.Namespace, batching: str, port: int) -> subprocess.Popen:
    """The service, as `studio serve` runs it; `batching` is a --batching mode, `queue:N` the queue with
    --max-batch-texts N."""
    mode, _, cap = batching.partition(":")
    cmd = [sys.executable, "-m", "studio", "--runs-dir", str(args.runs_dir), "serve", args.run, "--port", str(port),
           "--batching", mode] + (["--max-batch-texts", cap] if cap else [])  # fmt: skip
    cmd += (["--onnx"] if args.onnx else []) + (["--int8"] if args.int8 else [])
    log = open(Path(args.out) / f"server-{mode}{cap}.log", "a")  # noqa: SIM115 (the server's lifetime)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(url: str, server: subprocess.Popen, timeout: float = 300) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"the service exited with {server.returncode}; see its log in --out")
            try:
                r = await client.get(f"{url}/health")
                if r.status_code == 200 and r.json()["ready"]:
                    return r.json()
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit("the service was not ready in time")


async def load(url: str, texts: list[str], clients: int, seconds: float, per_request: int) -> dict:
    """`clients` closed-loop clients for `seconds`: latencies (s) of the answers, errors, load averages."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    loads: list[float] = []
    counter = iter(range(10**12))

    async def client(session: httpx.AsyncClient, stop: float) -> None:
        while time.monotonic() < stop:
            i = next(counter) * per_request
            batch = [texts[(i + k) % len(texts)] for k in range(per_request)]
            began = time.perf_counter()
            try:
                r = await session.post(f"{url}/predict", json={"texts": batch})
                ok = r.status_code == 200 and len(r.json()["predictions"]) == per_request
                if not ok:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            if ok:
                latencies.append(time.perf_counter() - began)

    async def sample(stop: float) -> None:
        while time.monotonic() < stop:
            loads.append(os.getloadavg()[0])
            await asyncio.sleep(5)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as session:
        for _ in range(20):  # warm-up, not counted
            await session.post(f"{url}/predict", json={"texts": texts[:per_request]})
        began = time.monotonic()
        stop = began + seconds
        await asyncio.gather(sample(stop), *(client(session, stop) for _ in range(clients)))
        elapsed = time.monotonic() - began
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, "loads": loads}


def row(batching: str, repeat: int, args: argparse.Namespace, got: dict) -> dict:
    lat = sorted(got["latencies"])

    def q(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else float("nan")

    n = len(lat)
    return {"batching": batching, "repeat": repeat, "clients": args.clients,
            "texts_per_request": args.texts_per_request, "seconds": round(got["elapsed"], 1), "requests": n,
            "texts": n * args.texts_per_request,
            "errors": len(got["errors"]), "requests_per_s": round(n / got["elapsed"], 2),
            "texts_per_s": round(n * args.texts_per_request / got["elapsed"], 2), "p50_ms": q(0.50), "p95_ms": q(0.95),
            "p99_ms": q(0.99), "max_ms": round(1000 * lat[-1], 1) if lat else float("nan"),
            "load_avg_1m_median": round(statistics.median(got["loads"]), 2) if got["loads"] else None}  # fmt: skip


def one(args: argparse.Namespace, batching: str, repeat: int, texts: list[str]) -> tuple[dict, dict, list[str]]:
    port = free_port()
    server = start(args, batching, port)
    url = f"http://127.0.0.1:{port}"
    try:
        health = asyncio.run(wait_ready(url, server))
        got = asyncio.run(load(url, texts, args.clients, args.seconds, args.texts_per_request))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    result = row(batching, repeat, args, got)
    print(json.dumps(result), flush=True)
    return result, health, got["errors"][:5]


def write(out: Path, rows: list[dict], args: argparse.Namespace, health: dict, errors: list[str]) -> None:
    import torch

    with open(out / "serve_load.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    keys = ["requests_per_s", "texts_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "load_avg_1m_median"]
    lines = [f"Medians over {args.repeats} repeat(s) of {args.seconds:.0f} s, {args.clients} concurrent clients, "
             f"{args.texts_per_request} text(s) per request, run {args.run} ({health.get('model')}, "
             f"{health.get('backend')}); errors: the sum over repeats.", "",
             "| batching | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]  # fmt: skip
    for mode in dict.fromkeys(r["batching"] for r in rows):
        mine = [r for r in rows if r["batching"] == mode]
        cells = [sum(r["errors"] for r in mine) if k == "errors" else round(statistics.median(r[k] for r in mine), 2)
                 for k in keys]  # fmt: skip
        lines.append(f"| {mode} | " + " | ".join(str(c) for c in cells) + " |")
    (out / "serve_load.md").write_text("\n".join(lines) + "\n")
    import transformers

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    env = {"commit": commit.strip(), "transformers": transformers.__version__,
           "cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads":
           torch.get_num_threads(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
           time.gmtime()), "load_avg_1m_per_run": [r["load_avg_1m_median"] for r in rows], "health": health,
           "first_errors": errors, "note": "client and service share this machine's cores (loopback); the machine "
           "is shared with other work, whose load shows in the load averages"}  # fmt: skip
    (out / "environment.json").write_text(json.dumps(env, indent=2) + "\n")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--run", required=True, help="a finished run's id")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batching", default="queue,lock", help="modes to compare, comma-separated: auto, queue, "
                        "lock, or queue:N (the queue scoring at most N texts a call)")  # fmt: skip
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--onnx", action="store_true")
    parser.add_argument("--int8", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    texts = test_texts(args.runs_dir, args.run)
    rows, errors, health = [], [], {}
    for repeat in range(args.repeats):
        for batching in args.batching.split(","):
            result, health, first = one(args, batching, repeat, texts)
            rows.append(result)
            errors += first
    write(args.out, rows, args, health, errors)
    print((args.out / "serve_load.md").read_text())


if __name__ == "__main__":
    main()
