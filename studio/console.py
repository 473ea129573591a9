"""What the command line prints while a run trains, and the library chatter it keeps off the terminal.

A run's events (studio/events.py) become the studio's own lines: phase changes and notes, one line per
validation, health warnings. On a terminal a single progress line (tqdm) sits under them with the step, the
ETA, the last training loss and validation score; to a pipe or a file (CI, `> log.txt`) there is no bar and no
carriage return, only the lines. The Trainer's own bar and `{'loss': ...}` dicts are off (hf_trainer.py).

Library noise is silenced where the studio cannot fix its cause, each by its logger or its category and
message, never all warnings (`NOISE`); what the studio caused itself is fixed where it is triggered (e.g.
adapters.py sets `fan_in_fan_out` for GPT-2's Conv1D layers).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, TextIO

from studio.events import Evaluation, Event, HealthFlag, Note, Progress, Status, TrainLog

BNB_LOGGER = "bitsandbytes.backends.cpu.ops"

NOISE: tuple[tuple[str, str], ...] = (
    # bitsandbytes logs this when it is imported on a machine without its optional `kernels` package (peft
    # imports it): nothing the studio calls, and 4-bit training needs a GPU anyway.
    ("log", "Failed to load CPU gemm_4bit_forward from kernels-community"),
    # peft's PeftModel reads the model's deprecated `is_gradient_checkpointing` (transformers 5.2x) itself.
    ("FutureWarning", "`is_gradient_checkpointing` is deprecated"),
    # adapters saved before the studio set fan_in_fan_out for Conv1D (GPT-2) warn each time they load.
    ("UserWarning", "fan_in_fan_out is set to False but the target module is `Conv1D`"),
)
"""(kind: "log" or the warning's category, start of the message) of each library message the command line drops."""


class _DropMessages(logging.Filter):
    def __init__(self, starts: list[str]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(str(record.msg).startswith(s) for s in self.starts)


def silence_known_noise() -> None:
    """Drop the `NOISE` messages (imports nothing: call it before the libraries load, as some log on import)."""
    bnb = logging.getLogger(BNB_LOGGER)
    if not any(isinstance(f, _DropMessages) for f in bnb.filters):
        bnb.addFilter(_DropMessages([text for kind, text in NOISE if kind == "log"]))
    categories = {"FutureWarning": FutureWarning, "UserWarning": UserWarning}
    for kind, text in NOISE:
        if kind in categories:
            warnings.filterwarnings("ignore", message=re.escape(text), category=categories[kind])


def quiet_libraries() -> None:
    """The known noise, and the libraries' load reports and weight-loading / map bars (the run has its own)."""
    silence_known_noise()
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def eval_line(event: Evaluation) -> str:
    """One validation during training as the command line prints it."""
    m, nan = event.metrics, float("nan")
    if "f1_micro" in m:
        scores = f"macro-F1 {m.get('f1_macro', nan):.4f} micro-F1 {m['f1_micro']:.4f} (at 0.5)"
    else:
        scores = f"accuracy {m.get('accuracy', nan):.4f} f1_macro {m.get('f1_macro', nan):.4f}"
    epoch = f" (epoch {event.epoch:.2f})" if event.epoch is not None else ""
    return f"  eval @ step {event.step}{epoch}: loss {m.get('loss', nan):.4f} {scores}"


@dataclass
class RunPrinter:
    """Prints a run's events as they come: lines, and on a terminal (`live`) one progress line under them.

    `quiet` keeps only the notes, the warnings and the errors (no phases, no evaluations, no bar)."""

    quiet: bool = False
    live: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    bar: Any = None
    postfix: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_stdout(cls, quiet: bool) -> RunPrinter:
        live = not quiet and sys.stdout.isatty()
        return cls(quiet=quiet, live=live, out=sys.stdout)

    def event(self, event: Event) -> None:
        if isinstance(event, HealthFlag):  # a run that is not learning is said even when quiet
            self.line(f"  warning: {event.line}")
        elif isinstance(event, Note):
            self.line(f"  {event.message}")
        elif isinstance(event, Status) and not self.quiet:
            if event.status != "training":
                self.close()
            self.line(f"  {event.message or event.status}")
        elif isinstance(event, Evaluation) and event.split is None and not self.quiet:
            self.line(eval_line(event))
            self._score(event.metrics)
        elif isinstance(event, TrainLog) and isinstance(event.values.get("loss"), int | float):
            self.postfix["loss"] = f"{event.values['loss']:.4f}"
            self._refresh()
        elif isinstance(event, Progress) and self.live:
            self._advance(event)

    def line(self, text: str) -> None:
        """A line of its own, above the progress line when there is one."""
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        """End the progress line (it stays on screen as it last was)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _score(self, metrics: dict[str, Any]) -> None:
        key, short = ("f1_macro", "val macro-F1") if "f1_micro" in metrics else ("accuracy", "val acc")
        if isinstance(metrics.get(key), int | float):
            self.postfix[short] = f"{metrics[key]:.4f}"
        self._refresh()

    def _advance(self, event: Progress) -> None:
        from tqdm import tqdm  # transformers' own dependency

        if self.bar is None:
            # a terminal that reports no size (a bare pty: 0 x 0) would get an empty line: then COLUMNS or 80 x 24
            sized = _columns(self.out) > 0
            width, height = shutil.get_terminal_size()
            self.bar = tqdm(total=event.max_steps or None, initial=event.step, desc="  training", unit="step",
                            file=self.out, dynamic_ncols=sized, ncols=None if sized else width,
                            nrows=None if sized else height, leave=True)  # fmt: skip
            self._refresh()
        if event.max_steps and self.bar.total != event.max_steps:
            self.bar.total = event.max_steps
        self.bar.update(max(0, event.step - self.bar.n))

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in self.postfix.items()))


def _columns(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, or a stream without a file descriptor
        return 0
