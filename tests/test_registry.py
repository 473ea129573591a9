"""The run registry: rows and folders, statuses, interrupted runs, reopening, safe ids; on SQLite and on
PostgreSQL (the `backend` fixture; a real server, tests/postgres.py). The database layer itself (migrations,
concurrent writers on several processes, dropped connections, bad URLs) is in tests/test_registry_db.py."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from studio.config import RunConfig
from studio.errors import RunNotFoundError, StudioError
from studio.registry import Registry
from studio.registry_db import HEAD


def test_create_lists_and_survives_reopening(runs_dir, backend):
    registry = Registry(runs_dir)
    record = registry.create(RunConfig.from_dict({"name": "first", "method": {"name": "qlora"}}))
    folder = registry.run_dir(record.id)
    assert (folder / "config.yaml").is_file() and record.status == "running"
    assert RunConfig.from_yaml(folder / "config.yaml") == RunConfig.from_dict(
        {"name": "first", "method": {"name": "qlora"}}
    )
    assert record.method == "qlora qv r16 4-bit nf4" and record.pid == os.getpid()
    (folder / "eval.json").write_text("{}")  # what a finished run writes last
    registry.update(record.id, status="completed", accuracy=0.9)
    reopened = Registry(runs_dir)
    assert [r.id for r in reopened.list()] == [record.id]
    assert reopened.get(record.id).status == "completed" and reopened.get(record.id).accuracy == 0.9
    assert (runs_dir / "registry.sqlite").exists() == (backend == "sqlite")
    if backend == "sqlite":
        with sqlite3.connect(runs_dir / "registry.sqlite") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_registry_from_before_the_flag_column_opens_and_keeps_its_rows(runs_dir):
    """Registries written before `flag` existed (schema 1, before Alembic) get the column on opening; their rows
    read as not checked (None), and a finished run records its flag."""
    runs_dir.mkdir()
    old_columns = ("id TEXT PRIMARY KEY, name TEXT, status TEXT NOT NULL, created REAL, finished REAL, pid INTEGER, "
                   "host TEXT, model TEXT, method TEXT, dataset TEXT, config_hash TEXT, seed INTEGER, accuracy REAL, "
                   "f1_macro REAL, f1_weighted REAL, peak_memory_mb REAL, train_seconds REAL, trainable_params "
                   "INTEGER, total_params INTEGER, message TEXT")  # fmt: skip
    with sqlite3.connect(runs_dir / "registry.sqlite") as db:
        db.execute(f"CREATE TABLE runs ({old_columns})")
        db.execute("INSERT INTO runs (id, name, status, created, model, method, dataset, config_hash, seed) "
                   "VALUES ('old', 'old', 'failed', 1.0, 'm', 'lora', 'd', 'h', 1)")  # fmt: skip
        db.execute("PRAGMA user_version = 1")
    registry = Registry(runs_dir)
    assert registry.get("old").flag is None and registry.get("old").status == "failed"
    registry.update("old", flag="collapsed")
    assert Registry(runs_dir).get("old").flag == "collapsed"  # opened again: nothing to migrate
    with sqlite3.connect(runs_dir / "registry.sqlite") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert db.execute("SELECT id FROM run_ids").fetchall() == [("old",)]  # its id is taken


def test_a_running_row_whose_process_is_gone_is_interrupted(runs_dir, backend):
    registry = Registry(runs_dir)
    record = registry.create(RunConfig())
    registry.update(record.id, pid=2**22 + 12345)  # no such process
    assert registry.get(record.id).status == "interrupted"
    assert registry.list(status="interrupted")[0].id == record.id


def test_a_completed_row_without_its_finished_marker_is_not_listed_as_completed(runs_dir, backend):
    registry = Registry(runs_dir)
    record = registry.create(RunConfig())
    registry.update(record.id, status="completed", accuracy=0.9)  # but eval.json was never written (or is gone)
    shown = registry.get(record.id)
    assert shown.status == "failed" and "no eval.json" in shown.message
    assert registry.list(status="completed") == [] and registry.list(status="failed")[0].id == record.id
    (registry.run_dir(record.id) / "eval.json").write_text("{}")  # the folder is the truth: back, completed
    assert registry.get(record.id).status == "completed"


def test_unknown_and_hostile_run_ids(runs_dir, backend):
    registry = Registry(runs_dir)
    with pytest.raises(RunNotFoundError, match="no run 'nope'.*studio runs"):
        registry.get("nope")
    for bad in ("../etc", "..", "a/../../b", "/etc/passwd"):
        with pytest.raises(RunNotFoundError):
            registry.get(bad)


def test_delete_removes_folder_and_row_but_not_a_live_run(runs_dir, backend):
    registry = Registry(runs_dir)
    live = registry.create(RunConfig.from_dict({"name": "live"}))
    with pytest.raises(StudioError, match="still training"):
        registry.delete(live.id)
    registry.update(live.id, status="completed")
    registry.delete(live.id)
    assert not registry.run_dir(live.id).exists() and registry.list() == []


def test_concurrent_writers_and_readers(runs_dir, backend):
    registry = Registry(runs_dir)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            rec = registry.create(RunConfig.from_dict({"name": f"r{i}"}))
            for _ in range(5):
                registry.update(rec.id, accuracy=0.5)
                registry.list()
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(registry.list()) == 8


def test_unwritable_runs_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StudioError, match="cannot be created"):
        Registry(blocker / "runs")


def test_processes_opening_a_new_runs_folder_at_once(tmp_path):
    # The ranks of a multi-GPU run open the same fresh runs folder at the same moment; switching the new file
    # to WAL answered "database is locked" at once to some of them (3 of 180 openings before the fix).

    failures = []
    for trial in range(30):
        folder = tmp_path / f"runs-{trial}"
        barrier = threading.Barrier(6)

        def open_it(folder=folder, barrier=barrier):
            barrier.wait()
            try:
                Registry(folder).list()
            except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
                failures.append(repr(e))

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    db = sqlite3.connect(tmp_path / "runs-0" / "registry.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_new_ids_are_reserved_and_a_taken_one_is_drawn_again(runs_dir, backend, monkeypatch):
    import secrets

    registry = Registry(runs_dir)
    monkeypatch.setattr("studio.registry.time.strftime", lambda fmt: "20260101-000000")
    digits = iter(["abcd", "abcd", "abcd", "beef"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(digits))
    first = registry.new_id("same")
    assert first == "20260101-000000-same-abcd" and registry.run_dir(first).is_dir()  # reserved: its folder
    record = registry.create(RunConfig.from_dict({"name": "same"}))  # the same second, the same digits
    assert record.id == "20260101-000000-same-beef"
    assert registry.create(RunConfig.from_dict({"name": "same"}), run_id=first).id == first  # the reservation
    with pytest.raises(StudioError, match=f"run id {first} belongs to another run"):
        registry.create(RunConfig(), run_id=first)
    spare = "20260101-000000-spare-0000"
    registry.run_dir(spare).mkdir()
    registry.release_id(spare)
    registry.release_id(first)  # a created run is not a reservation: kept
    assert not registry.run_dir(spare).exists() and registry.run_dir(first).is_dir()


def test_a_chosen_run_id_is_a_plain_folder_name(runs_dir, backend):
    registry = Registry(runs_dir)
    for bad in ("", ".", "..", ".hidden", "a/b", "../x", "a b", "x" * 129):
        with pytest.raises(StudioError, match="is not a valid folder name"):
            registry.check_id(bad)
    assert registry.create(RunConfig(), run_id="my-run_1.0").id == "my-run_1.0"
