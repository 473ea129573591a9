"""Training in a child process: the one way the studio starts ``python -m studio train`` (or torchrun for N
processes) and learns how it ended.

Four places train in child processes: ``train --gpus N`` (torchrun, one process per GPU), the Train tab's
"GPUs for this run", a grid's runs placed one per GPU (`sweep.Sweep`) and a grid's runs on a Ray cluster (each
Ray task starts one, `ray_sweep.train_point`; a retry resumes it: ``resume ID``). All go through `ChildRun`:

- the parent chooses the run id (`Registry.new_id`, which reserves its folder) and hands it to the child as
  ``train --run-id ID``; the child's rank 0 creates the row and folder under it. The parent knows its run
  from the start, with no lookup by config and time;
- the child's exit code says whether it ended as a run ends; the row says how. A child that failed on bad
  input records that itself, with its readable message (it was given an id: `Run.assigned_id`). A child
  that died (killed, crashed, torchrun ending the ranks) cannot, so the parent does (`ChildRun._settle`):
  it creates a `failed` row when the child died before creating one, marks a row the child left
  `running` as `interrupted` (resumable from its last checkpoint, as for any run whose process died),
  and saves the end of the child's error output in the run's log.txt. Nothing the child prints is parsed;
- stop: the STOP file every rank looks for (`training.request_stop`) once the row exists; before that, a
  signal to the child, which ends before it has written anything.
"""

from __future__ import annotations

import functools
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from studio.config import RunConfig
from studio.errors import RunNotFoundError, StudioError
from studio.events import Done, Event, Note, Status
from studio.registry import Registry, RunRecord
from studio.training import RunResult, request_stop, write_event

PROJECT_DIR = Path(__file__).resolve().parent.parent
"""Where `python -m studio` finds this package: the working directory of children that train a config."""

STDERR_TAIL_CHARS = 4000
"""How much of a failed child's error output goes into its run's log.txt (the end: where the reason is)."""


@dataclass(frozen=True)
class Launch:
    """The command line and environment of a child that trains one run."""

    train_args: tuple[str, ...]
    """What follows ``train``: a preset or config file and its options (--set, --name, --quiet)."""
    runs_dir: Path
    run_id: str
    processes: int = 1
    """More than one: torchrun starts them on this machine (DDP), one per GPU."""
    gpu: str | None = None
    """CUDA_VISIBLE_DEVICES for the child (a grid's run pinned to one GPU); None: this process's."""
    resume: bool = False
    """Continue interrupted run `run_id` from its last checkpoint (``resume ID``) instead of training a new one."""

    def studio_args(self) -> list[str]:
        """The arguments of ``python -m studio`` in every process of the child."""
        if self.resume:
            return ["--runs-dir", str(self.runs_dir), "resume", self.run_id, *self.train_args]
        return ["--runs-dir", str(self.runs_dir), "train", *self.train_args, "--run-id", self.run_id]

    def command(self) -> list[str]:
        if self.processes <= 1:
            return [sys.executable, "-m", "studio", *self.studio_args()]
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.processes}",
                "-m", "studio", *self.studio_args()]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env


class ChildRun:
    """A run trained by a child process (`Launch`), as `Jobs` and a grid use any run (`training.TrainingRun`).

    `start()` reserves the run's id, writes `config` for the child (unless `train_args` name what to train:
    the CLI passes its own preset and options on) and follows the child in a thread; its events are a status
    at launch and `done` at the end. In between, the run's own ``metrics.jsonl`` is what to follow: `id` is
    set once the child has created the run's row.

    console: the child writes to this process's stdout and stderr and works in its directory (the CLI: the
        user reads the run's lines as from one process). Otherwise it works in PROJECT_DIR, its stdout
        (every line of which is in the run's log) is dropped and its stderr kept for the run's log.txt.
    data_checked: the caller has already prepared the data. Otherwise a multi-process child's data is
        prepared here first: every rank would find bad data, and torchrun ends the others as soon as one
        exits, possibly before rank 0 has recorded why.
    resume: the child continues interrupted run `run_id` from its last checkpoint (``resume ID``).
    die_with_parent: the child is killed when this process dies (Linux), as a Ray task's child must be: Ray
        retries the task elsewhere, and the run must not train twice.
    """

    def __init__(self, config: RunConfig, registry: Registry, *, processes: int = 1, gpu: str | None = None,
                 train_args: list[str] | None = None, run_id: str | None = None, console: bool = False,
                 data_checked: bool = False, resume: bool = False, die_with_parent: bool = False):  # fmt: skip
        self.config, self.registry = config, registry
        self.processes, self.gpu = processes, gpu
        self.run_id = run_id
        """The id given to the child (reserved by `start` unless given here)."""
        self.resume, self.die_with_parent = resume, die_with_parent
        self.events: queue.Queue[Event] = queue.Queue()
        self.launch: Launch | None = None
        self._train_args = train_args
        self._console = console
        self._data_checked = data_checked or processes <= 1
        self._recorded = False
        self._proc: subprocess.Popen | None = None
        self._config_file: Path | None = None
        self._lock = threading.RLock()  # a second Ctrl-C may call stop() inside the first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: RunResult | None = None
        self.exit_code: int | None = None
        """The child's exit status once it ended (None: it never started)."""

    # ---- TrainingRun -----------------------------------------------------------------------------------
    @property
    def id(self) -> str | None:
        if not self._recorded and self.run_id is not None:
            self._recorded = self._record() is not None
        return self.run_id if self._recorded else None

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def start(self) -> ChildRun:
        if self.run_id is None:
            self.run_id = self.registry.new_id(self.config.name)
        train_args = self._train_args
        if self.resume:
            train_args = train_args or ["--quiet"]
        elif train_args is None:
            folder = self.registry.runs_dir / ".launch"
            folder.mkdir(exist_ok=True)
            self._config_file = folder / f"{self.run_id}.yaml"
            self.config.to_yaml(self._config_file)
            train_args = [str(self._config_file), "--quiet"]
        self.launch = Launch(tuple(train_args), self.registry.runs_dir, self.run_id, self.processes, self.gpu,
                             self.resume)  # fmt: skip
        where = f"{self.processes} processes (torchrun, one per GPU)" if self.processes > 1 else "a training process"
        self._emit(Status("launching", f"starting {where}"))
        self._thread = threading.Thread(target=self._supervise, name=f"child-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.request_stop()

    def request_stop(self) -> str | None:
        """`stop`, saying what happens: the run's STOP file once it trains (the message says so); before
        that, the child is ended (None: nothing was written, nothing to say)."""
        with self._lock:
            if self._stop.is_set():
                return None
            self._stop.set()
            record = self._record()
            if record is not None:
                try:
                    message = request_stop(self.registry, record.id)
                except StudioError:  # it has just ended: nothing left to stop
                    return None
                self._emit(Note(message))
                return message
            if self._proc is not None and self._proc.poll() is None:
                # One process turns Ctrl-C into a clean stop; torchrun ends its ranks on SIGTERM.
                self._proc.send_signal(signal.SIGINT if self.processes <= 1 else signal.SIGTERM)
            return None

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> RunResult | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self._result

    # ---- following the child ---------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The child's process id (torchrun's, for several processes), once it started."""
        return self._proc.pid if self._proc is not None else None

    def _supervise(self) -> None:
        try:
            self._result = self._train()
        except Exception as e:  # noqa: BLE001 - the parent's own trouble (a full disk) still ends the run readably
            self._result = RunResult(self.id, "failed", f"{type(e).__name__}: {e}", None)
        finally:
            if self._config_file is not None:
                self._config_file.unlink(missing_ok=True)
        result = self._result
        self._emit(Done(result.status, result.message))

    def _train(self) -> RunResult:
        if not self._data_checked:
            from studio.data import prepare

            try:
                prepare(self.config.data, self.config.seed)
            except StudioError as e:  # the reason, recorded as the child would have
                return self._record_failure(str(e), "")
        with tempfile.TemporaryFile() as stderr:
            with self._lock:  # a stop() before this point is seen here; one after it reaches the process
                if self._stop.is_set():
                    return self._settle_unstarted()
                self._proc = self._popen(stderr)
            code = self.exit_code = self._proc.wait()
            end = stderr.seek(0, os.SEEK_END)
            stderr.seek(max(0, end - STDERR_TAIL_CHARS * 4))  # up to 4 bytes a character
            tail = stderr.read().decode("utf-8", errors="replace")[-STDERR_TAIL_CHARS:].strip()
        return self._settle(code, tail)

    def _popen(self, stderr: IO[bytes]) -> subprocess.Popen:
        assert self.launch is not None
        # Its own session: Ctrl-C in a terminal reaches the parent, which turns it into a clean stop.
        parent = os.getpid() if self.die_with_parent and sys.platform == "linux" else None
        tied = {"preexec_fn": functools.partial(_child_setup, parent)}
        if self._console:
            return subprocess.Popen(self.launch.command(), env=self.launch.env(), start_new_session=True, **tied)
        return subprocess.Popen(self.launch.command(), env=self.launch.env(), cwd=PROJECT_DIR,
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, **tied)  # fmt: skip

    def _settle(self, code: int, tail: str) -> RunResult:
        """Make the run's row and log say how the child ended (module docstring), and return it."""
        record = self._record()
        while record is not None and record.status == "running":  # ranks a killed torchrun left training
            time.sleep(1.0)
            record = self._record()
        how = _exit_description(code)
        if record is None:
            if code == 0 or self._stop.is_set():  # ended before training began: nothing to keep
                return self._settle_unstarted()
            return self._record_failure(f"the training process ended before training began ({how})", tail)
        if record.status == "interrupted":
            message = f"the process training it ended without finishing ({how})"
            message += "; the end of its error output is in log.txt" if tail else ""
            self.registry.update(record.id, status="interrupted", message=message)
            self._log(f"{time.strftime('%H:%M:%S')} interrupted: {message}\n")
            record = self._record() or record
        if code != 0 and tail:
            self._log(_tail_block(code, tail))
        summary = self.registry.summary(record.id)
        return RunResult(record.id, record.status, record.message or "", summary)  # type: ignore[arg-type]

    def _settle_unstarted(self) -> RunResult:
        assert self.run_id is not None
        self.registry.release_id(self.run_id)
        return RunResult(None, "stopped", "stopped before training began", None)

    def _record_failure(self, message: str, tail: str) -> RunResult:
        """The run's row and folder, made here for a child that never made them, ended as `failed`."""
        assert self.run_id is not None
        record = self.registry.create(self.config, run_id=self.run_id)
        message += "; the end of its error output is in log.txt" if tail else ""
        self.registry.update(record.id, status="failed", message=message, finished=time.time())
        folder = self.registry.run_dir(record.id)
        write_event(folder, Done("failed", message))
        if tail:
            self._log(_tail_block(None, tail))
        self._recorded = True
        return RunResult(record.id, "failed", message, None)

    def _record(self) -> RunRecord | None:
        """The run's row (how the registry reads it: a dead child's `running` row reads `interrupted`)."""
        if self.run_id is None:
            return None
        try:
            return self.registry.get(self.run_id)
        except RunNotFoundError:
            return None

    def _log(self, text: str) -> None:
        assert self.run_id is not None
        with open(self.registry.run_dir(self.run_id) / "log.txt", "a", encoding="utf-8") as f:
            f.write(text)

    def _emit(self, event: Event) -> None:
        self.events.put(event)


def _child_setup(parent: int | None) -> None:
    """In the child before it runs. Ctrl-C's signal as default again: a studio started where SIGINT is ignored (a
    background job of a script: `python app.py &`) passes that on, Python then never turns SIGINT into
    KeyboardInterrupt, and a Stop sent before the child's own handler is set was lost (the run trained on to the
    end). With `parent`, the child also dies with it (`_die_with_parent`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if parent is not None:
        _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """In the child before it runs (Linux): SIGKILL it when the thread that started it ends, i.e. when the parent
    process dies (`ChildRun` starts it from a thread that lives until the child has ended); at once if the parent
    died before this was set."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _exit_description(code: int) -> str:
    """How a process ended, from its exit status (negative: the signal that ended it)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _tail_block(code: int | None, tail: str) -> str:
    ending = f"; {_exit_description(code)}" if code is not None else ""
    return f"--- the end of the training process's error output{ending} ---\n{tail}\n---\n"
