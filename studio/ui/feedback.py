"""How the UI reports problems: every engine error reaches the user as one readable line by the button that failed.

`guard` wraps an event handler. A `StudioError` (bad input the user can fix) becomes a warning toast and, when the
handler is given its tab (a dataclass with a `message` slot, placed by the tab's buttons), an update of that slot
only: every other output stays as it was and usable (a raised `gr.Error` would paint an "Error" badge over each
output, the fields the message asks to change included). The message names config fields by the page's labels
("Learning rate", not `train.learning_rate`), and `mark_fields` outlines the fields it names until the next
message. Anything else is logged with its traceback for the server log and said as one line. Either way the app
stays up and the page keeps its state.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import gradio as gr

from studio.errors import StudioError

log = logging.getLogger("studio.ui")
_IMPORTS = threading.Lock()


def import_engine_libraries() -> None:
    """Import torch, transformers, datasets and peft once, in one thread at a time.

    The UI imports them lazily so the page is up in seconds, but transformers' lazy module is not
    thread-safe: two handlers importing it at once (the Data tab's inspection and the memory estimate both
    run on page load) can see a half-initialised module ("has no attribute PreTrainedTokenizerBase").
    Every handler that reaches the engine's heavy parts goes through this lock first; after the first
    call it costs nothing.
    """
    with _IMPORTS:
        import datasets  # noqa: F401
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers

        for name in (
            "PreTrainedTokenizerBase",
            "AutoConfig",
            "AutoTokenizer",
            "AutoModelForSequenceClassification",
            "Trainer",
            "TrainingArguments",
            "TrainerCallback",
        ):
            getattr(transformers, name)


MESSAGE_CLASS = "studio-message"
FLAGGED = "studio-flagged"
"""The class a field named by the last message wears (outlined by the app's CSS)."""
_FIELDS = re.compile(r"<!-- fields: ([^>]*) -->")


def message_slot(elem_id: str) -> gr.Markdown:
    """The one line by a tab's main buttons where a failed action says why (empty until then)."""
    return gr.Markdown("", elem_id=elem_id, elem_classes=[MESSAGE_CLASS])


def clears(trigger: Any, slot: gr.Markdown) -> None:
    """Empty `slot` in the browser the moment `trigger` fires (no round trip): a message is about the last try."""
    trigger(None, None, slot, js="() => ''", queue=False, show_progress="hidden")


def failed_md(message: str, fields: list[str] | None = None) -> str:
    """A slot's text for a failed action; `fields` (config paths) ride along unseen for `mark_fields`."""
    marker = f"\n\n<!-- fields: {' '.join(fields)} -->" if fields else ""
    return f"⚠️ {message}{marker}"


def named_fields(message: str | None) -> list[str]:
    """The config paths a slot's text names (`failed_md`)."""
    found = _FIELDS.search(message or "")
    return found.group(1).split() if found else []


def marks(trigger_slot: gr.Markdown, session: Any) -> None:
    """Outline the fields a message in `trigger_slot` names (those of the form built so far: a tab's own and the
    tabs before it)."""
    fields = list(session.form.components)
    trigger_slot.change(lambda message: mark_fields(session, fields, message), trigger_slot, fields,
                        show_progress="hidden", queue=False)  # fmt: skip


def mark_fields(session: Any, fields: list[Any], message: str | None) -> dict[Any, Any]:
    """Outline the form's `fields` that `message` names and clear the outline of every other one."""
    flagged = set(named_fields(message))
    out = {}
    for b in session.form.bindings:
        for c in b.components:
            if c in fields:
                base = [k for k in (c.elem_classes or []) if k != FLAGGED]
                out[c] = gr.update(elem_classes=[*base, FLAGGED] if b.path in flagged else base)
    return out


def _place(args: tuple[Any, ...]) -> tuple[Any, Any]:
    """(the message slot, the config form) a handler's bound first arguments carry, None for either it lacks."""
    slot = next((a.message for a in args if isinstance(getattr(a, "message", None), gr.Markdown)), None)
    form = next((a.form for a in args if hasattr(getattr(a, "form", None), "words")), None)
    return slot, form


def _fail(args: tuple[Any, ...], message: str, error: Exception | None) -> Any:
    slot, form = _place(args)
    path = getattr(error, "field", "") or ""
    if form is not None:
        message = form.words(message)
    if slot is None:  # a handler given no slot: the toast is all the page gets
        raise gr.Error(message, title="Cannot do that", print_exception=False)
    gr.Warning(message, title="Cannot do that")
    fields = [b.path for b in form.bindings if path == b.path or path.startswith(f"{b.path}.")] if form else []
    return {slot: failed_md(message, fields)}


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` that says a failure instead of raising it: in its tab's message slot when one of its first arguments is
    the tab (a warning toast too), else as a `gr.Error` toast (for `said_in`, or a test calling it bare)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            import_engine_libraries()
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except StudioError as e:
            return _fail(args, str(e), e)
        except Exception as e:  # a bug: keep the app up, give the user one line, keep the traceback for us
            log.exception("handler %s failed", getattr(fn, "__name__", fn))
            return _fail(args, f"unexpected error ({type(e).__name__}: {e}); details are in the server log", None)

    return wrapper


def said_in(slot: gr.Markdown, fn: Callable[..., Any], outputs: Any) -> dict[str, Any]:
    """`fn=` and `outputs=` of an event: `fn` (a bound handler wearing `guard`), the outputs with `slot` among them.
    A failure is said in `slot` (and a warning toast) and leaves every other output as it was: no "Error" badge.

    For handlers that do not take their tab (whose `guard` cannot find the slot): the event's outputs are known here,
    so a success keeps its plain return (a value or a tuple in the outputs' order) and a failure updates the slot
    only. A `slot` already among the outputs (an answer line, a status) is not added twice."""
    listed = list(outputs) if isinstance(outputs, list | tuple) else [] if outputs is None else [outputs]

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            out = fn(*args)
        except gr.Error as e:
            gr.Warning(e.message, title="Cannot do that")
            return {slot: failed_md(e.message)}
        cleared = {} if slot in listed else {slot: ""}  # a slot of its own says nothing went wrong this time
        if isinstance(out, dict) and "__type__" not in out:  # keyed by component (a guard that found the slot too)
            return {**cleared, **out}
        if not listed or (isinstance(out, dict) and out.get("__type__") == "update" and len(out) == 1):
            return cleared or gr.skip()
        return {**dict(zip(listed, out if len(listed) > 1 else (out,), strict=True)), **cleared}

    return {"fn": wrapper, "outputs": listed + ([] if slot in listed else [slot])}  # an event's fn= and outputs=
