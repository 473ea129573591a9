"""Where presets and grid presets live, and how a name becomes a file (for the CLI, the UI and grids)."""

from __future__ import annotations

from pathlib import Path

from studio.errors import StudioError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
GRIDS_DIR = PRESETS_DIR / "grids"


def names(folder: Path = PRESETS_DIR) -> list[str]:
    """The presets (or grids) of `folder`, by name."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def resolve(name: str | Path, folder: Path = PRESETS_DIR, what: str = "preset") -> Path:
    """A path, or the name of a file in `folder` (with or without .yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (folder / str(name), folder / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise StudioError(f"{what} not found: {name} ({what}s: {', '.join(names(folder))})")
