"""The run registry: one folder per run plus an SQLite index for listing and querying.

Layout of ``<runs_dir>/<run_id>/``: ``config.yaml`` (the exact RunConfig), ``metrics.jsonl`` (the durable
event log: one JSON object per event), ``log.txt``, then, when training ends, ``adapter/`` (peft) or
``model/`` (full fine-tuning) in safetensors, ``tokenizer/``, ``label_map.json`` and finally ``eval.json``.
Artifacts are written under a temporary name and renamed, and ``eval.json`` is written last, so a folder
either holds a finished run or is visibly unfinished. A database indexes the folders; the folders are the
truth. The database (studio/registry_db.py) is ``<runs_dir>/registry.sqlite`` on one machine (SQLite, WAL mode:
every process using it must be on that machine), or the server ``STUDIO_REGISTRY_URL`` names (PostgreSQL) when
several machines share the runs folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from studio import registry_db
from studio.config import RunConfig
from studio.errors import RunNotFoundError, StudioError
from studio.registry_db import run_ids, runs
from studio.results import RunSummary

log = logging.getLogger(__name__)

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""What a run id may be: one plain folder name inside the runs directory (not hidden, no separators)."""
STATUSES = ("running", "completed", "stopped", "failed", "interrupted")
_COLUMNS = tuple(runs.c.keys())


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
        self.url = registry_db.registry_url(self.runs_dir)
        """The database: `STUDIO_REGISTRY_URL`, else the SQLite file `db_path`. Opened (and migrated) on first use,
        not here: ranks other than 0 of a multi-GPU run build a Registry for its paths and never open it."""
        self.db_path = self.runs_dir / registry_db.SQLITE_FILE

    @property
    def exists(self) -> bool:
        """Whether the runs folder has a registry already (its SQLite file; a server database always has one),
        without creating it."""
        return self.url.get_backend_name() != "sqlite" or Path(str(self.url.database)).is_file()

    @property
    def db(self) -> registry_db.Database:
        """The database, opened and brought up to date on first use (registry_db.database).

        Raises:
            RegistryUnavailableError: it cannot be reached, or the URL is wrong.
        """
        return registry_db.database(self.url)

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
        if not self.db.run(lambda conn: _insert_once(conn, runs, row, ("pid", "host", "created"))):
            raise StudioError(f"run id {run_id} belongs to another run in {self.runs_dir}; pick another")
        return self.get(run_id)

    def new_id(self, name: str) -> str:
        """A fresh run id for a run named `name` (`<YYYYMMDD-HHMMSS>-<name>-<4 hex>`), reserved: taken in the
        database (a unique key: two writers, on two machines too, cannot both take it) and its folder made here,
        empty until `create` fills it, so a launcher can hand it to the child process that creates the run. A
        taken id (another run of that name in the same second drew the same digits) is drawn again."""
        while True:
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"
            if self._take(run_id):
                try:
                    (self.runs_dir / run_id).mkdir()
                    return run_id
                except FileExistsError:  # a folder the database does not know (copied in, an older registry)
                    pass
            registry_db.STATS.redraws += 1

    def _take(self, run_id: str) -> bool:
        """Whether this call took `run_id` in the database (False: someone else holds it)."""
        row = {"id": run_id, "token": os.urandom(8).hex(), "claimed": time.time(), "host": socket.gethostname(),
               "pid": os.getpid()}  # fmt: skip
        return self.db.run(lambda conn: _insert_once(conn, run_ids, row, ("token",)))

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
        taken = self.db.run(lambda conn: conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first())
        if taken is not None or (folder / "config.yaml").exists() or (folder.exists() and not folder.is_dir()):
            raise StudioError(f"run id {run_id} belongs to another run in {self.runs_dir}; pick another")

    def _claim(self, run_id: str) -> str:
        """A chosen id: checked, and taken unless `new_id` reserved it (then it is the launcher's, for this run);
        two runs creating the same chosen id at once are told apart by the `runs` row's unique key."""
        self.check_id(run_id)
        self._take(run_id)
        (self.runs_dir / run_id).mkdir(exist_ok=True)
        return run_id

    def release_id(self, run_id: str) -> None:
        """Give back an id `new_id` reserved for a run that was never created (its folder is still empty)."""
        folder = self.runs_dir / run_id
        with suppress(OSError):  # not empty, or gone: then it is not a reservation to give back
            if folder.parent == self.runs_dir and not any(folder.iterdir()):
                folder.rmdir()
                free = run_ids.c.id.not_in(select(runs.c.id))
                self.db.run(lambda conn: conn.execute(delete(run_ids).where(run_ids.c.id == run_id, free)))

    def update(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown registry columns: {sorted(unknown)}")
        if fields.get("status") not in (None, *STATUSES):
            raise ValueError(f"unknown status {fields['status']!r}")
        change = update(runs).where(runs.c.id == run_id).values(**fields)
        matched = self.db.run(lambda conn: conn.execute(change).rowcount)
        if matched == 0:
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
        self.db.run(lambda conn: conn.execute(delete(runs).where(runs.c.id == run_id)))

    # ---- reading -------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """The folder of a run id, refusing ids that would lead outside the runs directory."""
        folder = (self.runs_dir / run_id).resolve()
        if folder.parent != self.runs_dir or run_id in ("", ".", ".."):
            raise RunNotFoundError(f"'{run_id}' is not a run id")
        return folder

    def get(self, run_id: str) -> RunRecord:
        self.run_dir(run_id)
        row = self.db.run(lambda conn: conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first())
        if row is None:
            raise RunNotFoundError(f"no run '{run_id}' in {self.runs_dir}; `python -m studio runs` lists them")
        return self._reconcile(RunRecord(**row))

    def list(self, status: str | None = None) -> list[RunRecord]:
        """Runs, newest first; `status` filters on what the folders say (after `_reconcile`), not the rows."""
        query = select(runs).order_by(runs.c.created.desc())
        rows = self.db.run(lambda conn: conn.execute(query).mappings().all())
        records = [self._reconcile(RunRecord(**r)) for r in rows]
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


def _insert_once(conn: Connection, table: Table, row: dict[str, Any], mine: tuple[str, ...]) -> bool:
    """Insert `row` unless its key is taken; True when the row there is this one (its `mine` columns match):
    inserted now, or by an attempt whose answer a dropped connection lost (so a retried call is idempotent)."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
    conn.execute(insert.values(**row).on_conflict_do_nothing(index_elements=["id"]))
    there = conn.execute(select(*(table.c[c] for c in mine)).where(table.c.id == row["id"])).first()
    return there is not None and tuple(there) == tuple(row[c] for c in mine)


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
