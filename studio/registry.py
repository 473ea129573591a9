"""The run registry: one folder per run plus an SQLite index for listing and querying.

Layout of ``<runs_dir>/<run_id>/``: ``config.yaml`` (the exact RunConfig), ``metrics.jsonl`` (the durable
event log: one JSON object per event), ``log.txt``, then, when training ends, ``adapter/`` (peft) or
``model/`` (full fine-tuning) in safetensors, ``tokenizer/``, ``label_map.json`` and finally ``eval.json``.
Artifacts are written under a temporary name and renamed, and ``eval.json`` is written last, so a folder
either holds a finished run or is visibly unfinished. The SQLite file (WAL mode, one short connection per
call, safe across threads and processes) indexes the folders; the folders are the truth.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import secrets
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.config import RunConfig
from studio.errors import RunNotFoundError, StudioError
from studio.results import RunSummary

log = logging.getLogger(__name__)

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""What a run id may be: one plain folder name inside the runs directory (not hidden, no separators)."""
STATUSES = ("running", "completed", "stopped", "failed", "interrupted")
_COLUMNS = (
    "id", "name", "status", "created", "finished", "pid", "host", "model", "method", "dataset", "config_hash",
    "seed", "accuracy", "f1_macro", "f1_weighted", "peak_memory_mb", "train_seconds", "trainable_params",
    "total_params", "message", "flag",
)  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, status TEXT NOT NULL, created REAL, finished REAL, pid INTEGER, host TEXT,
    model TEXT, method TEXT, dataset TEXT, config_hash TEXT, seed INTEGER, accuracy REAL, f1_macro REAL,
    f1_weighted REAL, peak_memory_mb REAL, train_seconds REAL, trainable_params INTEGER, total_params INTEGER,
    message TEXT, flag TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created);
"""
SCHEMA_VERSION = 2
"""2: the `flag` column (`RunRecord.flag`), added to older files when they are opened."""


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    status: str
    created: float
    finished: float | None
    pid: int | None
    host: str | None
    model: str
    method: str
    dataset: str
    config_hash: str
    seed: int
    accuracy: float | None
    f1_macro: float | None
    f1_weighted: float | None
    peak_memory_mb: float | None
    train_seconds: float | None
    trainable_params: int | None
    total_params: int | None
    message: str | None
    flag: str | None = None
    """"collapsed", "diverged" or "untrained" when the run did not learn (studio/health.py); "" when it was checked and
    learned; None when it was not checked (recorded before the check existed, or still running)."""


class Registry:
    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir).expanduser().resolve()
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StudioError(f"runs directory {self.runs_dir} cannot be created: {e.strerror}") from None
        self.db_path = self.runs_dir / "registry.sqlite"
        self._create()

    def _create(self) -> None:
        """The schema, in WAL mode (a property of the file: set once, it stays). Switching the journal mode
        answers "database is locked" at once, without waiting, when another process opens the same new file
        (the ranks of a multi-GPU run on a fresh runs folder did: tests/test_registry.py), so it is retried."""
        for attempt in range(100):
            try:
                with self._connect() as db:
                    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(_SCHEMA)
                    _migrate(db)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 99:
                    raise
                time.sleep(0.05 + 0.05 * random.random())

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    # ---- writing -------------------------------------------------------------------------------------
    def check_room(self, need_mb: float) -> None:
        """Refuse a run before it trains when the runs directory cannot be written or lacks `need_mb` free.

        Raises:
            StudioError: naming the directory, what it has and what to do.
        """
        probe = self.runs_dir / f".write-test-{os.getpid()}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise StudioError(f"runs directory {self.runs_dir} cannot be written ({e.strerror or e}); make it "
                              "writable or pick another with --runs-dir / STUDIO_RUNS_DIR") from None  # fmt: skip
        free = shutil.disk_usage(self.runs_dir).free / 2**20
        if free < need_mb:
            raise StudioError(
                f"runs directory {self.runs_dir} has {free:,.0f} MB free; this run needs about {need_mb:,.0f} MB "
                "(model, checkpoints, predictions): free some space or pick another with --runs-dir / STUDIO_RUNS_DIR"
            )

    def create(self, config: RunConfig, trained: RunConfig | None = None, *, run_id: str | None = None) -> RunRecord:
        """A new run: its folder with config.yaml, and a `running` row owned by this process.

        `trained` is what trains when a speed profile changed `config` (speed_plan.plan): config.yaml holds it (what
        reloading, export and reruns need), requested.yaml the config as asked, and the row is keyed by the
        asked config's hash (a grid resumes by what it asked for) but shows the method that trained.
        `run_id`: the id a launcher chose (`new_id`, `launch.ChildRun`); None draws a fresh one.

        Raises:
            StudioError: `run_id` is not a valid new run id or belongs to another run.
        """
        trained = trained or config
        run_id = self._claim(run_id) if run_id is not None else self.new_id(config.name)
        folder = self.runs_dir / run_id
        trained.to_yaml(folder / "config.yaml", header=f"Run {run_id}. Rerun: python -m studio train <this file>")
        if trained != config:
            config.to_yaml(folder / "requested.yaml", header=f"Run {run_id} as asked, before its speed profile "
                           f"({config.train.speed}) chose the settings in config.yaml")  # fmt: skip
        row = {
            "id": run_id, "name": config.name, "status": "running", "created": time.time(), "pid": os.getpid(),
            "host": socket.gethostname(), "model": trained.model.name, "method": _method_label(trained),
            "dataset": config.data.source, "config_hash": config.config_hash(), "seed": config.seed,
        }  # fmt: skip
        try:
            with self._connect() as db:
                db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                           tuple(row.values()))  # fmt: skip
        except sqlite3.IntegrityError:
            raise StudioError(f"run id {run_id} belongs to another run in {self.runs_dir}; pick another") from None
        return self.get(run_id)

    def new_id(self, name: str) -> str:
        """A fresh run id for a run named `name` (`<YYYYMMDD-HHMMSS>-<name>-<4 hex>`), reserved: its folder is
        made here, empty until `create` fills it, so no other run draws it meanwhile and a launcher can hand it
        to the child process that creates the run. A taken id (another run of that name in the same second
        drew the same digits) is drawn again."""
        while True:
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"
            try:
                (self.runs_dir / run_id).mkdir()
                return run_id
            except FileExistsError:
                continue

    def check_id(self, run_id: str) -> None:
        """Refuse `run_id` as the id of a new run: it must be a plain folder name (letters, digits, '.', '_',
        '-'; starting with a letter or digit) that no run has yet. A folder `new_id` reserved is free.

        Raises:
            StudioError: naming the id and what to do.
        """
        if not RUN_ID_PATTERN.fullmatch(run_id):
            raise StudioError(f"run id {run_id!r} is not a valid folder name: use letters, digits, '.', '_' and '-', "
                              "starting with a letter or digit (at most 128 characters)")  # fmt: skip
        folder = self.runs_dir / run_id
        with self._connect() as db:
            taken = db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None
        if taken or (folder / "config.yaml").exists() or (folder.exists() and not folder.is_dir()):
            raise StudioError(f"run id {run_id} belongs to another run in {self.runs_dir}; pick another")

    def _claim(self, run_id: str) -> str:
        self.check_id(run_id)
        (self.runs_dir / run_id).mkdir(exist_ok=True)
        return run_id

    def release_id(self, run_id: str) -> None:
        """Give back an id `new_id` reserved for a run that was never created (its folder is still empty)."""
        folder = self.runs_dir / run_id
        with suppress(OSError):  # not empty, or gone: then it is not a reservation to give back
            if folder.parent == self.runs_dir and not any(folder.iterdir()):
                folder.rmdir()

    def update(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown registry columns: {sorted(unknown)}")
        if fields.get("status") not in (None, *STATUSES):
            raise ValueError(f"unknown status {fields['status']!r}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._connect() as db:
            cur = db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))
        if cur.rowcount == 0:
            raise RunNotFoundError(f"no run '{run_id}' in {self.runs_dir}")

    def delete(self, run_id: str) -> None:
        """Remove the folder and the row together (the row last, so a failure leaves it listed)."""
        record = self.get(run_id)
        if record.status == "running" and _alive(record):
            raise StudioError(f"run {run_id} is still training; stop it before deleting it")
        folder = self.run_dir(run_id)
        if folder.exists():
            trash = folder.with_name(f".deleting-{run_id}")
            folder.rename(trash)
            shutil.rmtree(trash)
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # ---- reading -------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """The folder of a run id, refusing ids that would lead outside the runs directory."""
        folder = (self.runs_dir / run_id).resolve()
        if folder.parent != self.runs_dir or run_id in ("", ".", ".."):
            raise RunNotFoundError(f"'{run_id}' is not a run id")
        return folder

    def get(self, run_id: str) -> RunRecord:
        self.run_dir(run_id)
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run '{run_id}' in {self.runs_dir}; `python -m studio runs` lists them")
        return self._reconcile(RunRecord(**dict(row)))

    def list(self, status: str | None = None) -> list[RunRecord]:
        """Runs, newest first; `status` filters on what the folders say (after `_reconcile`), not the rows."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY created DESC").fetchall()
        records = [self._reconcile(RunRecord(**dict(r))) for r in rows]
        return [r for r in records if status is None or r.status == status]

    def task(self, run_id: str) -> str:
        """single_label | multi_label: what the run's model predicts, from its label_map.json. Lenient, for lists
        of runs (single_label while the run has no readable label map); `models.read_task` is the strict reader a
        model load uses, and imports torch, which a page listing runs should not."""
        try:
            data = json.loads((self.run_dir(run_id) / "label_map.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RunNotFoundError):
            return "single_label"
        return "multi_label" if isinstance(data, dict) and data.get("task") == "multi_label" else "single_label"

    def summary(self, run_id: str) -> RunSummary | None:
        """The run's eval.json (metrics, efficiency, reproducibility), or None while it has none (or it is
        damaged: a list of runs must still show the others)."""
        path = self.run_dir(run_id) / "eval.json"
        if not path.is_file():
            return None
        try:
            return RunSummary.read(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("run %s: eval.json cannot be read (%s: %s)", run_id, type(e).__name__, e)
            return None

    def finish(self, run_id: str, status: str, message: str, summary: RunSummary | None) -> None:
        """Record how a run ended, with its headline results (the columns the runs list shows and sorts by)."""
        columns = ("accuracy", "f1_macro", "f1_weighted", "peak_memory_mb", "train_seconds", "trainable_params",
                   "total_params")  # fmt: skip
        results: dict[str, Any] = dict.fromkeys(columns)
        if summary is not None:
            test, eff = summary.test, summary.efficiency
            results = dict(accuracy=test.accuracy, f1_macro=test.f1_macro, f1_weighted=test.f1_weighted,
                           peak_memory_mb=eff.peak_memory_mb, train_seconds=eff.train_seconds,
                           trainable_params=eff.trainable_params, total_params=eff.total_params,
                           flag=(summary.health.flag or "") if summary.health else None)  # fmt: skip
        self.update(run_id, status=status, message=message, finished=time.time(), **results)

    def _reconcile(self, record: RunRecord) -> RunRecord:
        """A `running` row whose process is gone was interrupted (killed, crashed, machine restarted); a
        `completed` row whose folder lost its eval.json (written last: the finished marker) is not shown as
        completed: the folder is what is true (the row stays as it is, should the file come back)."""
        if record.status == "completed" and not (self.runs_dir / record.id / "eval.json").is_file():
            message = "its folder has no eval.json: the run's files are incomplete (moved, deleted or damaged)"
            return RunRecord(**{**record.__dict__, "status": "failed", "message": message})
        if record.status != "running" or _alive(record):
            return record
        message = "the process training it ended without finishing (killed or crashed)"
        self.update(record.id, status="interrupted", message=message)
        return RunRecord(**{**record.__dict__, "status": "interrupted", "message": message})


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a registry written by an older studio to `SCHEMA_VERSION` (its rows stay; new columns are NULL).
    Another process opening the same file may have added the column a moment ago: that is not an error."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "flag" not in columns:
        try:
            db.execute("ALTER TABLE runs ADD COLUMN flag TEXT")
        except sqlite3.OperationalError as e:
            if "duplicate column" not in str(e):
                raise
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _alive(record: RunRecord) -> bool:
    if record.host != socket.gethostname() or record.pid is None:
        return True  # another machine's run (shared storage): trust the row
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _method_label(config: RunConfig) -> str:
    m = config.method
    if m.spec.trains_every_weight:  # no placement, no rank
        return m.name
    label = f"{m.name} {m.resolved_placement()}"
    if m.spec.rank:
        label += f" r{m.r}"
    if m.quantized:
        label = f"{label} {m.bits}-bit" + (f" {m.quant_type}" if m.bits == 4 else "")
    return label


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
