"""Errors a user can act on.

Every error the engine raises on purpose is a `StudioError`: its message names what is wrong (the config
field, the file, the column) and what to do. The edges (CLI, UI) show it once, as one line, and never a
traceback. Anything else escaping the engine is a bug.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: a problem with the user's input or environment, explained in `str(self)`."""


class ConfigError(StudioError):
    """A config value is invalid. `field` is the dotted path (e.g. ``train.batch_size``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class DataError(StudioError):
    """The dataset cannot be loaded or does not fit the config (missing column, empty file, ...)."""


class ModelError(StudioError):
    """The model cannot be loaded or prepared for the chosen method."""


class RunNotFoundError(StudioError):
    """No run with that id exists in the runs directory."""


class RegistryUnavailableError(StudioError):
    """The run registry's database cannot be reached or used (a wrong STUDIO_REGISTRY_URL, the server down)."""
