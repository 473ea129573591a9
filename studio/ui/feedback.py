"""How the UI reports problems: every engine error reaches the user as one readable line, never a traceback.

`guard` wraps an event handler: a `StudioError` (bad input the user can fix) becomes a `gr.Error` toast with
its message; anything else is logged with its traceback for the server log and shown as one line that says
so. Either way the app stays up and the page keeps its state.
"""

from __future__ import annotations

import functools
import logging
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


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            import_engine_libraries()
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except StudioError as e:
            raise gr.Error(str(e), title="Cannot do that", print_exception=False) from None
        except Exception as e:  # a bug: keep the app up, give the user one line, keep the traceback for us
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(
                f"unexpected error ({type(e).__name__}: {e}); details are in the server log", print_exception=False
            ) from None

    return wrapper
