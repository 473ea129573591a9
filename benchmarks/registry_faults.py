"""The run registry under load and faults, on a real PostgreSQL (tests/postgres.py starts one in a temp folder) and
on SQLite:

    python3 benchmarks/registry_faults.py [--repeats 3] [--processes 4] [--runs 60]

1. burst: --processes processes each create --runs runs (`Registry.create`: folder, config.yaml, row) of one name
   as fast as they can: runs per second, runs lost (no row) and duplicated (an id twice), ids drawn again. Once
   with real ids (the second + 16 random bits) and once "forced": every id in the same second and its digits
   drawn from 1,024 values, so that ids collide many times.
2. claims: the same processes only reserving ids (`Registry.new_id`: the database claim and the folder): the
   rate the id path sustains without writing configs.
3. dropped connections (PostgreSQL): the server ends the pooled connections between calls
   (pg_terminate_backend): the next call's time and retries; the server ends the connection inside a call: the
   call's time and retries; the server stopped and started again 2 s later (pg_ctl): how long the call waiting
   on it took and how many times it was retried (`registry_db.RETRY_DELAYS`: 0.1, 0.3, 1, 2, 4 s).

Medians over --repeats. The machine is shared: the load averages are recorded around each part. Writes
benchmarks/results/registry_faults/results.json and environment.json, and prints a summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from postgres import PostgresServer, missing  # noqa: E402
from sqlalchemy import event  # noqa: E402

from studio import registry_db  # noqa: E402
from studio.config import RunConfig  # noqa: E402
from studio.hardware import cpu_name  # noqa: E402
from studio.registry import Registry  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "registry_faults"


def _child(runs_dir: str, count: int, forced: bool, claims_only: bool) -> tuple[list[str], int, float]:
    import secrets

    import studio.registry

    if forced:
        random.seed(os.getpid())
        studio.registry.time.strftime = lambda fmt: "20260101-000000"  # type: ignore[assignment]
        secrets.token_hex = lambda n: f"{random.randrange(1024):04x}"  # type: ignore[assignment]
    registry = Registry(runs_dir)
    config = RunConfig.from_dict({"name": "burst"})
    t0 = time.perf_counter()
    ids = [registry.new_id("burst") if claims_only else registry.create(config).id for _ in range(count)]
    return ids, registry_db.STATS.redraws, time.perf_counter() - t0


def burst(url: str | None, processes: int, runs: int, forced: bool, claims_only: bool) -> dict:
    """One burst in a fresh runs folder (and, for PostgreSQL, the database at `url`, emptied first)."""
    runs_dir = Path(tempfile.mkdtemp(prefix="studio-burst-"))
    if url:
        os.environ["STUDIO_REGISTRY_URL"] = url
    else:
        os.environ.pop("STUDIO_REGISTRY_URL", None)
    registry = Registry(runs_dir)
    with registry.db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM runs")
        conn.exec_driver_sql("DELETE FROM run_ids")
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.starmap(_child, [(str(runs_dir), runs, forced, claims_only)] * processes)
    wall = time.perf_counter() - t0
    made = [run_id for ids, _, _ in results for run_id in ids]
    with registry.db.engine.connect() as conn:
        table = "run_ids" if claims_only else "runs"
        stored = [r[0] for r in conn.exec_driver_sql(f"SELECT id FROM {table}")]
    return {"made": len(made), "distinct": len(set(made)), "stored": len(stored),
            "lost": len(set(made) - set(stored)), "duplicated": len(made) - len(set(made)),
            "redraws": sum(r[1] for r in results), "seconds": round(wall, 3),
            "per_second": round(len(made) / max(r[2] for r in results), 1)}  # fmt: skip


def _timed(call) -> tuple[float, int]:  # noqa: ANN001
    before = registry_db.STATS.retries
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0, registry_db.STATS.retries - before


def faults(server: PostgresServer, database: str) -> dict:
    os.environ["STUDIO_REGISTRY_URL"] = server.url(database)
    registry = Registry(tempfile.mkdtemp(prefix="studio-faults-"))
    record = registry.create(RunConfig())
    registry.get(record.id)
    out: dict = {}
    ended = server.terminate(database)
    seconds, retries = _timed(lambda: registry.get(record.id))
    out["between_calls"] = {"connections_ended": ended, "next_call_ms": round(seconds * 1000, 1), "retries": retries}

    done: list = []

    def end_it(conn, cursor, statement, *_):  # noqa: ANN001
        if not done and statement.lstrip().upper().startswith("UPDATE"):
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            done.append(server.execute(f"SELECT pg_terminate_backend({pid})"))

    event.listen(registry.db.engine, "before_cursor_execute", end_it)
    seconds, retries = _timed(lambda: registry.update(record.id, accuracy=0.5))
    event.remove(registry.db.engine, "before_cursor_execute", end_it)
    out["inside_a_call"] = {"call_ms": round(seconds * 1000, 1), "retries": retries,
                            "value_written": registry.get(record.id).accuracy == 0.5}  # fmt: skip

    server.stop()
    timer = threading.Timer(2.0, server.start)
    timer.start()
    seconds, retries = _timed(lambda: registry.list())
    timer.join()
    out["server_restarted_after_2s"] = {"call_s": round(seconds, 2), "retries": retries}
    return out


def median_of(rows: list[dict]) -> dict:
    return {k: (statistics.median(r[k] for r in rows) if isinstance(rows[0][k], (int, float)) and not
                isinstance(rows[0][k], bool) else [r[k] for r in rows]) for k in rows[0]}  # fmt: skip


def environment() -> dict:
    import psycopg
    import sqlalchemy

    version = sorted(os.listdir("/usr/lib/postgresql")) if os.path.isdir("/usr/lib/postgresql") else None
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "cpu_model": cpu_name(),
            "cores": os.cpu_count(), "python": platform.python_version(), "sqlalchemy": sqlalchemy.__version__,
            "psycopg": psycopg.__version__, "postgresql": version, "sqlite": __import__("sqlite3").sqlite_version,
            "note": "PostgreSQL: tests/postgres.py, fsync off, 127.0.0.1; shared machine: see loadavg"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=60, help="runs (or ids) per process")
    args = parser.parse_args()
    reason = missing()
    if reason:
        sys.exit(f"cannot start PostgreSQL: {reason}")
    server = PostgresServer().start()
    results: dict = {"processes": args.processes, "runs_per_process": args.runs, "repeats": args.repeats}
    try:
        database = server.new_database()
        for backend, url in (("postgresql", server.url(database)), ("sqlite", None)):
            for label, forced, claims in (("burst", False, False), ("burst_forced_collisions", True, False),
                                          ("claims_forced_collisions", True, True)):  # fmt: skip
                load = os.getloadavg()
                rows = [burst(url, args.processes, args.runs, forced, claims) for _ in range(args.repeats)]
                results[f"{backend}_{label}"] = {**median_of(rows), "loadavg_start": load,
                                                 "loadavg_end": os.getloadavg()}  # fmt: skip
                print(backend, label, results[f"{backend}_{label}"], flush=True)
        registry_db.close_all()
        load = os.getloadavg()
        rows = [faults(server, database) for _ in range(args.repeats)]
        results["postgresql_faults"] = {k: median_of([r[k] for r in rows]) for k in rows[0]}
        results["postgresql_faults"]["loadavg"] = [load, os.getloadavg()]
        print("faults", results["postgresql_faults"], flush=True)
    finally:
        registry_db.close_all()
        server.remove()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (OUT / "environment.json").write_text(json.dumps(environment(), indent=2) + "\n")


if __name__ == "__main__":
    main()
