"""Form components bound to RunConfig fields by their dotted path.

A field's label, help text, choices (from its `Literal` type) and default come from the config
dataclasses, and each path is checked against them when the component is made, so the form cannot drift
from the config. The form edits a *base* config (the preset last loaded): fields the form does not show
keep the preset's values, and reading the form back validates through `RunConfig.from_dict`, so the UI, the
CLI and the presets share one set of rules and messages.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.config import SECTIONS, RunConfig, field_help
from studio.errors import ConfigError

_PATH = re.compile(r"(?<![\w./-])(?:data|model|method|train)(?:\.[a-z_0-9]+)+(?![\w/-])")
"""A dotted config path in a message (`train.learning_rate`, `data.balance.num_samples`)."""


def _field(path: str) -> tuple[type, dataclasses.Field, Any]:
    """(section class, dataclass field, resolved type) of a dotted path, or KeyError."""
    section, _, name = path.rpartition(".")
    cls = SECTIONS[section]
    for f in dataclasses.fields(cls):
        if f.name == name:
            return cls, f, typing.get_type_hints(cls)[name]
    raise KeyError(path)


def _choices(tp: Any) -> list[Any] | None:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Literal:
        return list(typing.get_args(tp))
    for a in args:
        if typing.get_origin(a) is typing.Literal:
            return list(typing.get_args(a))
    return None


def _optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp)


def get_path(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


@dataclass
class Binding:
    """Components that edit one config field: usually one component, a few for a compound field."""

    path: str
    components: tuple[Any, ...]
    to_config: Callable[..., Any]
    """The components' values (in order) -> the field's value."""
    to_ui: Callable[[Any], Any]
    """The field's value -> the component's value (a tuple of values for several components)."""
    merge: Callable[[Any, Any], Any] | None = None
    """(the base's value, the form's value) -> the field's value, for a field whose parts the form does not all
    show (a separate test file's split): the base keeps the parts the form has no component for."""


class ConfigForm:
    """The components that edit a RunConfig; `read` turns their values into a validated config."""

    def __init__(self, initial: RunConfig):
        self.initial = initial.to_dict()
        self.bindings: list[Binding] = []

    def field(
        self,
        path: str,
        kind: type | None = None,
        *,
        to_config: Callable | None = None,
        to_ui: Callable | None = None,
        **kwargs: Any,
    ) -> Any:
        """A component for `path` with the config's label, help, choices and the initial value."""
        cls, f, tp = _field(path)
        choices = _choices(tp)
        if kind is None:
            base = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
            kind = (
                gr.Dropdown
                if choices
                else gr.Checkbox
                if base is bool
                else gr.Number
                if base in (int, float)
                else gr.Textbox
            )
        label = kwargs.pop("label", f.name.replace("_", " "))
        info = kwargs.pop("info", field_help(cls, f.name))
        if choices and kind in (gr.Dropdown, gr.Radio) and "choices" not in kwargs:
            kwargs["choices"] = choices
        if kind is gr.Number and (tp is int or int in typing.get_args(tp)):
            kwargs.setdefault("precision", 0)
        if kind is gr.Number and _optional(tp):
            # A number box cannot be left empty in the browser (it shows 0), so 0 means "off" here.
            kwargs["minimum"] = 0
            info = f"{info} 0 = off." if info else "0 = off."
            to_config = to_config or (lambda v: None if v in (None, 0, "") else v)
            to_ui = to_ui or (lambda v: 0 if v is None else v)
        to_ui = to_ui or (_none_to_blank if kind is gr.Textbox else lambda v: v)
        component = kind(label=label, info=info, value=to_ui(get_path(self.initial, path)), **kwargs)
        return self.bind(path, component, to_config=to_config, to_ui=to_ui)

    def bind(
        self,
        path: str,
        *components: Any,
        to_config: Callable | None = None,
        to_ui: Callable | None = None,
        merge: Callable | None = None,
    ) -> Any:
        """Bind components to `path`; several components need both converters (and show the initial config's
        value from here on). `merge`: see `Binding.merge`. Returns the first one."""
        _field(path)  # a typo in a path fails when the app is built, not when a user clicks
        if len(components) > 1 and (to_config is None or to_ui is None):
            raise ValueError(f"{path}: binding {len(components)} components needs to_config and to_ui")
        binding = Binding(path, components, to_config or _blank_to_none, to_ui or (lambda v: v), merge)
        self.bindings.append(binding)
        if len(components) > 1:  # made before their binding: they show the preset the app starts from
            for component, value in zip(components, to_ui(get_path(self.initial, path)), strict=True):
                component.value = component.postprocess(value)
        return components[0]

    @property
    def components(self) -> list[Any]:
        return [c for b in self.bindings for c in b.components]

    def component(self, path: str) -> Any:
        """The (first) component bound to `path`; KeyError when the form has none."""
        for b in self.bindings:
            if b.path == path:
                return b.components[0]
        raise KeyError(path)

    def label(self, path: str) -> str | None:
        """The page's name for the field at `path` (its component's label, capitalised); None when not shown."""
        for b in self.bindings:
            label = getattr(b.components[0], "label", None)
            if b.path == path and label:
                return label[:1].upper() + label[1:]
        return None

    def words(self, message: str) -> str:
        """`message` in the page's words: config paths the form shows become their labels ("data.label_column:
        ..." -> "Label column: ...", "data.balance.num_samples" -> "Balance (num samples)"). The CLI keeps
        the paths: they are what it is typed with."""

        def said(match: re.Match) -> str:
            path = match.group(0)
            for b in sorted(self.bindings, key=lambda b: -len(b.path)):
                label = self.label(b.path)
                if label and path == b.path:
                    return label
                if label and path.startswith(f"{b.path}."):
                    return f"{label} ({path[len(b.path) + 1 :].replace('_', ' ')})"
            return path

        return _PATH.sub(said, message)

    def read(self, base: dict[str, Any] | None, values: dict[Any, Any]) -> RunConfig:
        """The config of `base` (a config dict, default: the initial one) with the form's values.

        Raises:
            ConfigError: naming the first bad field, e.g. ``train.learning_rate: ...``.
        """
        data = copy.deepcopy(base or self.initial)
        for b in self.bindings:
            if all(c in values for c in b.components):
                try:
                    value = b.to_config(*(values[c] for c in b.components))
                except (TypeError, ValueError) as e:
                    raise ConfigError(b.path, str(e)) from None
                set_path(data, b.path, b.merge(get_path(data, b.path), value) if b.merge else value)
        if data.get("model", {}).get("trust_remote_code"):  # e.g. a base taken from a run the CLI trained
            raise ConfigError(
                "model.trust_remote_code",
                "would run code shipped with the model, which the app never does (a hosted app would run it for "
                "anyone); train this config with the CLI: python -m studio train PRESET --set "
                "model.trust_remote_code=true",
            )
        return RunConfig.from_dict(data)

    def values(self, config: RunConfig | dict[str, Any]) -> dict[Any, Any]:
        """The value of each component when the form shows `config` (what a page sends back unchanged)."""
        data = config if isinstance(config, dict) else config.to_dict()
        out = {}
        for b in self.bindings:
            value = b.to_ui(get_path(data, b.path))
            values = value if len(b.components) > 1 else (value,)
            out.update(zip(b.components, values, strict=True))
        return out

    def updates(self, config: RunConfig | dict[str, Any]) -> dict[Any, Any]:
        """Component updates that show `config` in the form."""
        return {c: gr.update(value=v) for c, v in self.values(config).items()}


def _none_to_blank(value: Any) -> Any:
    return "" if value is None else value


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
    return None if value == "" else value


def comma_list(value: Any) -> list[str] | None:
    """'query, value' -> ['query', 'value']; empty -> None."""
    items = [v.strip() for v in str(value or "").replace("\n", ",").split(",") if v.strip()]
    return items or None


def floats(value: Any) -> list[float]:
    """'0.8, 0.1, 0.1' -> [0.8, 0.1, 0.1]."""
    try:
        return [float(v) for v in comma_list(value) or []]
    except ValueError:
        raise ValueError(f"'{value}' is not a list of numbers; write e.g. 0.8, 0.1, 0.1") from None


def joined(value: Any) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value or [])
