"""What every tab shares: the runs folder, the registry, the training slot, cached predictors and the form."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from studio.config import RunConfig
from studio.inference import PredictorCache
from studio.jobs import Jobs
from studio.presets import GRIDS_DIR, PRESETS_DIR, resolve
from studio.registry import Registry
from studio.ui.form import ConfigForm

DEFAULT_PRESET = "quick_demo"


@dataclass
class Context:
    runs_dir: Path
    registry: Registry
    jobs: Jobs
    predictors: PredictorCache
    form: ConfigForm

    preset_name: str | None
    """The preset the form starts from (None: a file outside presets/)."""
    grids_dir: Path = GRIDS_DIR

    @classmethod
    def create(cls, runs_dir: str | Path, preset: str | Path | None = None, grids_dir: Path | None = None) -> Context:
        """`preset`: a name in presets/ or a YAML path the form starts from (default: the quick demo)."""
        registry = Registry(runs_dir)
        path = resolve(preset or DEFAULT_PRESET)
        initial = RunConfig.from_yaml(path)
        name = path.stem if path.resolve().parent == PRESETS_DIR else None
        return cls(registry.runs_dir, registry, Jobs(registry), PredictorCache(registry), ConfigForm(initial), name,
                   Path(grids_dir or GRIDS_DIR))  # fmt: skip

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
