"""The registry's database (studio/registry_db.py) on SQLite and on a real PostgreSQL (tests/postgres.py): its
migrations, several processes creating runs at once, a dropped connection retried, a database that cannot be
reached named in one line, and the ranks of a multi-GPU run other than 0 never opening it."""

from __future__ import annotations

import multiprocessing
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import event

from studio import registry_db
from studio.config import RunConfig
from studio.errors import RegistryUnavailableError
from studio.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
# The registry file exactly as the studio wrote it before SQLAlchemy (schema 2, WAL, PRAGMA user_version).
PREVIOUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, status TEXT NOT NULL, created REAL, finished REAL, pid INTEGER, host TEXT,
    model TEXT, method TEXT, dataset TEXT, config_hash TEXT, seed INTEGER, accuracy REAL, f1_macro REAL,
    f1_weighted REAL, peak_memory_mb REAL, train_seconds REAL, trainable_params INTEGER, total_params INTEGER,
    message TEXT, flag TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created);
"""


def test_head_is_the_newest_migration_and_the_migrated_tables_are_the_models(runs_dir, backend):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    assert ScriptDirectory(str(Path(registry_db.__file__).parent / "migrations")).get_current_head() == registry_db.HEAD
    registry = Registry(runs_dir)
    registry.list()
    with registry.db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), registry_db.metadata) == []


def test_a_registry_file_from_the_previous_studio_keeps_working(runs_dir):
    runs_dir.mkdir()
    with sqlite3.connect(runs_dir / "registry.sqlite") as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(PREVIOUS_SCHEMA)
        db.execute("INSERT INTO runs (id, name, status, created, model, method, dataset, config_hash, seed, accuracy, "
                   "flag, trainable_params) VALUES ('20250101-000000-old-abcd', 'old', 'completed', 1.0, 'm', 'lora', "
                   "'d', 'h', 1, 0.75, '', 12345678901)")  # fmt: skip
        db.execute("PRAGMA user_version = 2")
    (runs_dir / "20250101-000000-old-abcd").mkdir()
    (runs_dir / "20250101-000000-old-abcd" / "eval.json").write_text("{}")
    registry = Registry(runs_dir)
    old = registry.get("20250101-000000-old-abcd")
    assert (old.status, old.accuracy, old.flag, old.trainable_params) == ("completed", 0.75, "", 12345678901)
    new = registry.create(RunConfig.from_dict({"name": "new"}))
    assert [r.id for r in registry.list()] == [new.id, old.id]
    with sqlite3.connect(runs_dir / "registry.sqlite") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(registry_db.HEAD,)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_registry_from_a_newer_studio_is_refused_in_words(runs_dir):
    Registry(runs_dir).list()
    registry_db.close_all()
    with sqlite3.connect(runs_dir / "registry.sqlite") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(RegistryUnavailableError, match=r"registry.sqlite was last written by a newer studio \(its "
                       r"tables are at revision 9999; this one knows up to 0003\): upgrade the studio"):  # fmt: skip
        Registry(runs_dir).list()


def test_an_old_schema_postgresql_database_is_migrated(runs_dir, postgres_database):
    """A database at the first revision (no `flag`, no `run_ids`) with a run in it: opening brings it to head."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    url = registry_db.registry_url(runs_dir)
    config = Config()
    config.set_main_option("script_location", str(Path(registry_db.__file__).parent / "migrations"))
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text("INSERT INTO runs (id, name, status, created, model, method, dataset, config_hash, seed) "
                          "VALUES ('old', 'old', 'failed', 1.0, 'm', 'lora', 'd', 'h', 1)"))  # fmt: skip
    engine.dispose()
    registry = Registry(runs_dir)
    assert registry.get("old").status == "failed" and registry.get("old").flag is None
    registry.update("old", flag="collapsed")
    assert registry.get("old").flag == "collapsed"
    with registry.db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == registry_db.HEAD
        assert conn.execute(text("SELECT id FROM run_ids")).scalars().all() == ["old"]


def _create_runs(runs_dir: Path, count: int) -> tuple[list[str], int, float]:
    """In a child process: `count` runs of one name in what the ids call one second, their 4 digits drawn from
    1,024 values, so that ids collide between the processes (and within each) many times."""
    import secrets

    import studio.registry

    random.seed(os.getpid())
    studio.registry.time.strftime = lambda fmt: "20260101-000000"  # type: ignore[assignment]
    secrets.token_hex = lambda n: f"{random.randrange(1024):04x}"  # type: ignore[assignment]
    registry = Registry(runs_dir)
    config = RunConfig.from_dict({"name": "burst"})
    t0 = time.perf_counter()
    ids = [registry.create(config).id for _ in range(count)]
    return ids, registry_db.STATS.redraws, time.perf_counter() - t0


def test_processes_creating_runs_at_once_lose_none_and_duplicate_none(runs_dir, postgres_database):
    processes, each = 4, 60
    Registry(runs_dir).list()  # the tables, before the children race for them
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.starmap(_create_runs, [(runs_dir, each)] * processes)
    made = [run_id for ids, _, _ in results for run_id in ids]
    rows = Registry(runs_dir).list()
    assert len(made) == len(set(made)) == processes * each  # every process got its own ids
    assert sorted(r.id for r in rows) == sorted(made)  # every run has its row, and no row is there twice
    assert all((runs_dir / run_id / "config.yaml").is_file() for run_id in made)
    assert sum(redraws for _, redraws, _ in results) > 0  # collisions happened and were drawn again


def test_a_dropped_connection_is_retried(runs_dir, postgres, postgres_database, monkeypatch):
    registry = Registry(runs_dir)
    record = registry.create(RunConfig())
    before = registry_db.STATS.retries
    # The server ends the pooled connections between calls (a restart, an admin, an idle timeout): the pool's
    # pre-ping replaces them before use, nothing fails and nothing is retried.
    assert postgres.terminate(postgres_database) >= 1
    assert registry.get(record.id).id == record.id and registry_db.STATS.retries == before
    # ... and in the middle of a call: the call is run again on a new connection.
    ended = []

    def end_it(conn, cursor, statement, *_):  # noqa: ANN001 - SQLAlchemy's hook
        if not ended and statement.lstrip().upper().startswith("UPDATE"):
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            ended.append(postgres.execute(f"SELECT pg_terminate_backend({pid})"))

    monkeypatch.setattr(registry_db, "RETRY_DELAYS", (0.05, 0.05))
    event.listen(registry.db.engine, "before_cursor_execute", end_it)
    try:
        registry.update(record.id, accuracy=0.5)
    finally:
        event.remove(registry.db.engine, "before_cursor_execute", end_it)
    assert ended == [[(True,)]] and registry_db.STATS.retries == before + 1
    assert registry.get(record.id).accuracy == 0.5
    # A server that stays down: the bounded retries end in one line naming it.
    postgres.stop()
    try:
        with pytest.raises(RegistryUnavailableError, match=r"cannot be reached \(tried 3 times over 0.1 s\)"):
            registry.list()
    finally:
        postgres.start()
    assert registry.get(record.id).accuracy == 0.5


def test_a_registry_that_cannot_be_reached_is_named_in_one_line(runs_dir, postgres, postgres_database, monkeypatch):
    from postgres import free_port

    cases = {
        f"postgresql://studio@127.0.0.1:{free_port()}/x": r"at postgresql\+psycopg://studio@127.0.0.1:\d+/x cannot be "
        r"reached: connection failed: .*Connection refused.*; check STUDIO_REGISTRY_URL",
        postgres.url("no_such_db"): r'cannot be reached: .*database "no_such_db" does not exist',
        "not a url": r"STUDIO_REGISTRY_URL='not a url' is not a database URL",
        "nosuchdb://x/y": "its database driver is not installed",
    }  # fmt: skip
    for url, message in cases.items():
        monkeypatch.setenv("STUDIO_REGISTRY_URL", url)
        retries = registry_db.STATS.retries
        with pytest.raises(RegistryUnavailableError, match=message):
            Registry(runs_dir).list()
        assert registry_db.STATS.retries == retries  # never reached: not retried
    monkeypatch.setenv("STUDIO_REGISTRY_URL", f"postgresql://studio:secret@127.0.0.1:{free_port()}/x")
    done = subprocess.run([sys.executable, "-m", "studio", "--runs-dir", str(runs_dir), "runs"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and "secret" not in done.stderr
    assert done.stderr.startswith("error: the run registry at postgresql+psycopg://studio:***@127.0.0.1:")


class _Closed(Registry):
    """A registry whose database must not be opened: what a rank other than 0 is given in the test below."""

    @property
    def db(self) -> registry_db.Database:
        raise AssertionError("a rank other than 0 opened the registry")


def test_ranks_other_than_0_never_open_the_registry(runs_dir, monkeypatch):
    """Rank 1 of 2: the row rank 0 created arrives through torch.distributed (broadcast), and a resume follows
    the run's folder; neither opens the database."""
    from studio import distributed
    from studio.training import Run

    made = Registry(runs_dir).create(RunConfig.from_dict({"name": "ddp"}))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    sent = []
    monkeypatch.setattr(distributed, "broadcast", lambda w, value: sent.append(value) or (made, None))
    registry = _Closed(runs_dir)
    run = Run(RunConfig.from_dict({"name": "ddp"}), registry)
    assert run.world.rank == 1 and not run.world.writes
    run._create_record()
    assert sent == [(None, None)] and run.record == made and run.dir == runs_dir / made.id
    checkpoint = runs_dir / made.id / "checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / "optimizer.pt").write_bytes(b"")
    resumed = Run.resuming(registry, made.id)
    assert resumed.resume == (made.id, checkpoint) and resumed.world.rank == 1
    monkeypatch.setenv("RANK", "0")  # rank 0 does open it: the guard above is real
    with pytest.raises(AssertionError, match="opened the registry"):
        Run.resuming(_Closed(runs_dir), made.id)


def test_a_sqlite_registry_on_a_network_filesystem_is_warned_about(runs_dir, monkeypatch, caplog):
    mounts = ("/dev/sda1 / ext4 rw 0 0\nserver:/export /shared nfs4 rw 0 0\n"
              "lustre@o2ib:/fs /lus lustre rw 0 0\ntmpfs /shared/tmp tmpfs rw 0 0\n")  # fmt: skip
    assert registry_db.network_filesystem(Path("/shared/studio-runs"), mounts) == "nfs4"
    assert registry_db.network_filesystem(Path("/lus/a/b"), mounts) == "lustre"
    assert registry_db.network_filesystem(Path("/shared/tmp/runs"), mounts) is None  # the longest mount point
    assert registry_db.network_filesystem(Path("/home/me/runs"), mounts) is None and mounts
    assert registry_db.network_filesystem(Path("/sharedx"), mounts) is None
    monkeypatch.setattr(registry_db, "network_filesystem", lambda folder: "nfs4")
    Registry(runs_dir).list()
    assert "on a network filesystem (nfs4): SQLite's WAL mode needs every process" in caplog.text
    assert "STUDIO_REGISTRY_URL" in caplog.text


@pytest.mark.slow  # two training processes (torchrun, gloo)
def test_a_two_process_run_on_postgresql_connects_from_rank_0_only(tmp_path, tiny_model_dir, postgres,
                                                                    postgres_database):  # fmt: skip
    """`train --gpus 2` for real, the registry on PostgreSQL: the server's log of connections (each names its
    process: `registry_db.application_name`) shows the launcher and rank 0, never rank 1."""
    postgres.execute("ALTER SYSTEM SET log_connections = on")
    postgres.execute("SELECT pg_reload_conf()")
    config = RunConfig.from_dict({
        "name": "ddp-pg", "data": {"source": "imdb-sample", "max_samples": 120, "max_length": 32},
        "model": {"name": str(tiny_model_dir("bert"))}, "method": {"name": "lora", "r": 4},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 2, "logging_steps": 2},
    })  # fmt: skip
    config.to_yaml(tmp_path / "ddp.yaml")
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "studio", "--runs-dir", str(runs), "train", str(tmp_path / "ddp.yaml"),
                           "--gpus", "2", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=400,
                          env={**os.environ, "STUDIO_DDP_ON_CPU": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = Registry(runs).list()
    assert record.status == "completed" and Registry(runs).summary(record.id).distributed.processes == 2
    names = [line.split("application_name=", 1)[1] for line in (postgres.root / "log").read_text().splitlines()
             if f"database={postgres_database} application_name=studio" in line]  # fmt: skip
    assert any(name.endswith(" rank 0") for name in names), names
    assert not any(" rank 1" in name for name in names), names
