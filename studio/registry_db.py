"""The registry's database, through SQLAlchemy Core: SQLite on one machine (the default, a file in the runs
folder) or a server database (PostgreSQL) that several machines share, named by ``STUDIO_REGISTRY_URL``.

The same tables serve both. Their history is Alembic migrations shipped in ``studio/migrations`` and applied
when a registry is first opened (a file written by an older studio, without Alembic's version table, is
recognised by its columns and brought up to date). A connection the server dropped (restart, failover, an
idle timeout) is replaced before use (``pool_pre_ping``), and a call it broke is run again, a bounded number
of times: every call the registry makes is idempotent (`Database.run`). A registry that cannot be reached in
the first place (a wrong URL, the server down) is reported at once, as a `RegistryUnavailableError`.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    exc,
    text,
)
from sqlalchemy.engine import URL, Connection, make_url

from studio.errors import RegistryUnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")

URL_VARIABLE = "STUDIO_REGISTRY_URL"
SQLITE_FILE = "registry.sqlite"
HEAD = "0003"
"""The newest migration in studio/migrations/versions (tests/test_registry_db.py checks they agree)."""
RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 4.0)
"""Seconds waited before each new attempt of a call a dropped connection broke: 5 more attempts, 7.4 s in all."""

metadata = MetaData()
runs = Table(
    "runs", metadata,
    Column("id", Text, primary_key=True), Column("name", Text), Column("status", Text, nullable=False),
    Column("created", Double), Column("finished", Double), Column("pid", Integer), Column("host", Text),
    Column("model", Text), Column("method", Text), Column("dataset", Text), Column("config_hash", Text),
    Column("seed", Integer), Column("accuracy", Double), Column("f1_macro", Double), Column("f1_weighted", Double),
    Column("peak_memory_mb", Double), Column("train_seconds", Double), Column("trainable_params", BigInteger),
    Column("total_params", BigInteger), Column("message", Text), Column("flag", Text),
    Index("runs_created", "created"),
)  # fmt: skip
run_ids = Table(
    "run_ids", metadata,
    Column("id", Text, primary_key=True), Column("token", Text, nullable=False), Column("claimed", Double),
    Column("host", Text), Column("pid", Integer),
)  # fmt: skip
"""Every run id handed out (`Registry.new_id`): its primary key is what makes two writers on two machines drawing
the same id at the same moment impossible; `token` tells the writer whose insert it was."""


@dataclass
class Stats:
    """What this process's registries met (read by benchmarks/registry_faults.py and the tests)."""

    retries: int = 0
    """Calls run again after a dropped connection."""
    retry_seconds: float = 0.0
    """Time spent waiting between those attempts."""
    redraws: int = 0
    """Run ids drawn again because another writer held them."""


STATS = Stats()


@dataclass
class Database:
    url: URL
    engine: Engine
    reached: bool = False
    """Whether a call has succeeded: from then on a failing connection was dropped, and is retried."""
    sqlite: bool = field(init=False)

    def __post_init__(self) -> None:
        self.sqlite = self.url.get_backend_name() == "sqlite"

    @property
    def where(self) -> str:
        return str(self.url.database) if self.sqlite else self.url.render_as_string(hide_password=True)

    def run(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` in one transaction. An operational error (the connection dropped, the server
        restarting) runs it again after `RETRY_DELAYS`, once the database had been reached; the work must be
        idempotent (the registry's calls are: see `Registry.create`).

        Raises:
            RegistryUnavailableError: the database cannot be reached (first call) or stopped answering.
        """
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                with self.engine.begin() as conn:
                    result = work(conn)
                self.reached = True
                return result
            except (exc.OperationalError, exc.InterfaceError) as e:
                if not self.reached or self.sqlite or delay is None:
                    raise self.unavailable(e, attempt + 1) from None
                log.warning("registry %s: %s; trying again in %.1f s", self.where, _first_line(e), delay)
                STATS.retries += 1
                STATS.retry_seconds += delay
                time.sleep(delay)
        raise AssertionError("unreachable")

    def unavailable(self, e: BaseException, attempts: int = 1) -> RegistryUnavailableError:
        if self.sqlite:
            return RegistryUnavailableError(f"the run registry {self.where} cannot be used: {_first_line(e)}")
        tried = f" (tried {attempts} times over {sum(RETRY_DELAYS[: attempts - 1]):.1f} s)" if attempts > 1 else ""
        return RegistryUnavailableError(
            f"the run registry at {self.where} cannot be reached{tried}: {_first_line(e)}; check {URL_VARIABLE} "
            "(postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE) and that the database server is running"
        )


_open: OrderedDict[tuple[str, int], Database] = OrderedDict()
_KEPT = 8
"""Databases kept open per process (the least recently opened beyond it are closed: a test session opens many)."""
_lock = threading.Lock()


def registry_url(runs_dir: Path) -> URL:
    """``STUDIO_REGISTRY_URL`` when set (plain ``postgresql://`` means psycopg 3, the driver the studio ships),
    else the SQLite file in the runs folder.

    Raises:
        RegistryUnavailableError: the variable is not a database URL.
    """
    value = os.environ.get(URL_VARIABLE, "").strip()
    if not value:
        return URL.create("sqlite", database=str(runs_dir / SQLITE_FILE))
    try:
        url = make_url(value)
    except exc.ArgumentError:
        raise RegistryUnavailableError(f"{URL_VARIABLE}={value!r} is not a database URL; expected e.g. "
                                       "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE") from None  # fmt: skip
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def database(url: URL) -> Database:
    """This process's `Database` for `url` (one engine and pool per process, shared by its registries), its
    tables brought up to date on first use.

    Raises:
        RegistryUnavailableError: the database cannot be reached, its driver is missing, or it cannot be migrated.
    """
    key = (url.render_as_string(hide_password=False), os.getpid())
    with _lock:
        if key not in _open:
            db = Database(url, _engine(url))
            try:
                _migrate(db)
            except (exc.OperationalError, exc.InterfaceError) as e:
                db.engine.dispose()
                raise db.unavailable(e) from None
            db.reached = True
            _open[key] = db
            while len(_open) > _KEPT:
                _open.popitem(last=False)[1].engine.dispose()
        _open.move_to_end(key)
        return _open[key]


def close_all() -> None:
    """Close every pooled connection of this process (tests dropping their databases)."""
    with _lock:
        for db in _open.values():
            db.engine.dispose()
        _open.clear()


def _forget_after_fork() -> None:
    """A forked child must not use, nor close, its parent's pooled connections (they share the sockets), nor wait
    on a lock another thread of the parent held at the fork."""
    global _lock
    _lock = threading.Lock()
    for db in _open.values():
        db.engine.dispose(close=False)
    _open.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def application_name() -> str:
    """How this process's connections show in the server's pg_stat_activity and logs: host, pid, and the rank in a
    multi-GPU run (which should only ever be 0)."""
    rank = f" rank {os.environ['RANK']}" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    return f"studio {socket.gethostname()} pid {os.getpid()}{rank}"[:63]


def _engine(url: URL) -> Engine:
    where = url.render_as_string(hide_password=True)
    try:
        if url.get_backend_name() != "sqlite":
            connect = {"connect_timeout": 10, "application_name": application_name()}
            connect = connect if url.get_backend_name() == "postgresql" else {}
            return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800,
                                 connect_args=connect)  # fmt: skip
    except (exc.NoSuchModuleError, ImportError) as e:
        raise RegistryUnavailableError(f"{URL_VARIABLE}={where}: its database driver is not installed ({e}); "
                                       "for PostgreSQL use postgresql+psycopg://... (pip install "
                                       "'psycopg[binary]')") from None  # fmt: skip
    network = network_filesystem(Path(str(url.database)).parent)
    if network:
        log.warning("the run registry %s is on a network filesystem (%s): SQLite's WAL mode needs every process "
                    "using it on one machine and does not work over a network filesystem; keep the runs folder's "
                    "registry on a local disk, or set %s to a PostgreSQL database", url.database, network,
                    URL_VARIABLE)  # fmt: skip
    # SQLite: pooled connections (closing the last one checkpoints the WAL file: 10 ms a call), used by one thread
    # at a time. Transactions are begun here (pysqlite's own would not cover DDL); migrations take the write lock
    # at once (IMMEDIATE). synchronous=NORMAL is what SQLite advises with WAL (a power cut may lose the last
    # commits, never corrupt the file; the run folders are the truth).
    engine = create_engine(url, pool_size=2, max_overflow=8, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - SQLAlchemy's hook
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout=30000")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("studio_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "ceph", "glusterfs", "fuse.sshfs", "9p",
                       "beegfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "afs", "panfs")  # fmt: skip


def network_filesystem(folder: Path, mounts: str | None = None) -> str | None:
    """The type of the network filesystem `folder` is on (the longest matching mount point in /proc/mounts),
    or None on a local disk or where that cannot be told."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    best, kind = "", None
    target = str(folder.resolve()) if folder.exists() else str(folder)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, fields[2]
    return kind if kind in NETWORK_FILESYSTEMS else None


def _migrate(db: Database) -> None:
    """Bring the tables to `HEAD`, one process at a time (SQLite: the write lock; PostgreSQL: an advisory lock
    held by the transaction). SQLite files are switched to WAL once; switching answers "database is locked" at
    once, without waiting, when another process opens the same new file, so that is retried."""
    version = _version(db)
    if version == HEAD:
        return
    if version is not None and version not in _revisions():
        raise RegistryUnavailableError(
            f"the run registry {db.where} was last written by a newer studio (its tables are at revision {version}; "
            f"this one knows up to {HEAD}): upgrade the studio on this machine (pip install -U fine-tune-studio)"
        )
    for attempt in range(100):
        try:
            if db.sqlite:
                _wal(db.engine)
            with db.engine.connect() as conn, conn.execution_options(studio_immediate=True).begin():
                if db.url.get_backend_name() == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(28280001)"))
                _upgrade(conn)
            return
        except exc.OperationalError as e:
            if not db.sqlite or "locked" not in str(e) or attempt == 99:
                raise
            time.sleep(0.05 + 0.05 * random.random())


def _revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory(str(Path(__file__).parent / "migrations")).walk_revisions()}


def _wal(engine: Engine) -> None:
    raw = engine.raw_connection()  # outside any transaction: the journal mode cannot change inside one
    try:
        cursor = raw.cursor()
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        raw.close()


def _version(db: Database) -> str | None:
    with db.engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except exc.ProgrammingError:
            return None
        except exc.OperationalError as e:
            if db.sqlite and "no such table" in str(e):
                return None
            raise


def _upgrade(conn: Connection) -> None:
    """Alembic's upgrade to head on `conn`, inside the caller's transaction. A registry from before Alembic
    (no version table) is stamped with the revision its columns match first: 0002 with `flag`, else 0001."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = conn
    inspector = inspect(conn)
    tables = set(inspector.get_table_names())
    if "runs" in tables and "alembic_version" not in tables:
        columns = {c["name"] for c in inspector.get_columns("runs")}
        command.stamp(config, "0002" if "flag" in columns else "0001")
    command.upgrade(config, "head")


def _first_line(e: BaseException) -> str:
    inner = getattr(e, "orig", None) or e
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return lines[0] if lines else type(inner).__name__
