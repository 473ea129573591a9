"""What every handler of one app shares (`Session`), the app that carries it (`StudioApp`), and `handler`.

Handlers are module-level functions whose first arguments are the Session (and, for those that update many
components, the tab's components); `handler` binds those for Gradio, so a test calls the same function with
plain values and no page.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.config import RunConfig
from studio.inference import PredictorCache
from studio.jobs import Jobs
from studio.presets import GRIDS_DIR, PRESETS_DIR, resolve
from studio.registry import Registry
from studio.ui.form import ConfigForm

DEFAULT_PRESET = "quick_demo"


@dataclass
class Session:
    """One app's engine objects, its config form, and the page state the tabs share.

    The engine objects serve every page of the app (one registry, one training slot). The `gr.State` fields
    are components whose values Gradio keeps per page; `Session.create` makes them, so call it inside the
    app's `gr.Blocks` for a page (outside one they are plain, unrendered components: enough for tests).
    """

    runs_dir: Path
    registry: Registry
    jobs: Jobs
    predictors: PredictorCache
    form: ConfigForm
    preset_name: str | None
    """The preset the form starts from (None: a file outside presets/)."""
    grids_dir: Path
    """Where the Compare tab finds its grids."""

    base: gr.State
    """The config (a dict) the form edits: the preset, run or file loaded last. Fields the form does not show
    keep its values."""
    base_preset: gr.State
    """The preset `base` came from (None: a run's or a file's config): the CLI command starts from it."""
    num_labels: gr.State
    """Labels in the inspected data (2 until the Data tab inspected it): the memory estimate sizes the head."""
    train_rows: gr.State
    """Training rows of the inspected data (None until then): the speed plan counts steps with them."""

    started_grid: tuple[Any, str] | None = None
    """(the sweep this app started last, the grid file it came from): the Compare tab draws a running study
    only while the page shows that grid."""

    @classmethod
    def create(cls, runs_dir: str | Path, preset: str | Path | None = None, grids_dir: Path | None = None) -> Session:
        """`preset`: a name in presets/ or a YAML path the form starts from (default: the quick demo)."""
        registry = Registry(runs_dir)
        path = resolve(preset or DEFAULT_PRESET)
        initial = RunConfig.from_yaml(path)
        form = ConfigForm(initial)
        name = path.stem if path.resolve().parent == PRESETS_DIR else None
        return cls(
            runs_dir=registry.runs_dir,
            registry=registry,
            jobs=Jobs(registry),
            predictors=PredictorCache(registry),
            form=form,
            preset_name=name,
            grids_dir=Path(grids_dir or GRIDS_DIR),
            base=gr.State(form.initial),
            base_preset=gr.State(name),
            num_labels=gr.State(2),
            train_rows=gr.State(None),
        )

    # ---- reading a page's values ---------------------------------------------------------------------------
    def read(self, values: dict[Any, Any]) -> RunConfig:
        """The config a page's form shows: its base with the form's values (`ConfigForm.read`)."""
        return self.form.read(values[self.base], values)

    def labels(self, values: dict[Any, Any]) -> int:
        """Labels the page's data has (at least 2: a classifier's head never has fewer)."""
        return max(2, int(values[self.num_labels] or 2))

    def grid_of(self, sweep: Any) -> str | None:
        """The grid file this app started `sweep` from (None: it did not start it)."""
        started = self.started_grid
        return started[1] if started is not None and started[0] is sweep else None

    # ---- uploads -------------------------------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        return self.runs_dir / "uploads"

    def keep_upload(self, temp_path: str | Path) -> Path:
        """Copy an uploaded file out of Gradio's temporary cache into ``<runs>/uploads/``.

        A run's config.yaml names its data file; the upload cache is cleaned up, so the run would lose it.
        The copy is named by content, so uploading the same file twice keeps one copy.
        """
        src = Path(temp_path)
        digest = hashlib.sha256(src.read_bytes()).hexdigest()[:10]
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        dest = self.uploads_dir / f"{digest}-{src.name}"
        if not dest.exists():
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dest)
        return dest


class StudioApp(gr.Blocks):
    """The studio's Blocks. `studio` is its Session: tests and scripts reach the registry and the training
    slot behind a page through it."""

    studio: Session


def handler(fn: Callable[..., Any], *first: Any) -> Callable[..., Any]:
    """`fn` with its first arguments given (the Session, a tab's components): Gradio passes the inputs' values
    after them. Keeps `fn`'s name, which Gradio gives the endpoint when the event names none, and its docstring,
    the endpoint's description in the API page."""
    bound = functools.partial(fn, *first)
    bound.__name__ = fn.__name__  # type: ignore[attr-defined]
    bound.__doc__ = fn.__doc__
    return bound
