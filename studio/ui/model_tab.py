"""Model & method tab: the basic settings beside a live memory estimate, every other knob under "Advanced".

Basic: model, method, speed profile, epochs, batch size and accumulation, learning rate, max length (the Data
tab's too: one field shown twice, kept in step). Advanced (closed): the method's own settings (quantization,
adapter), schedule, optimizer, loss, evaluation, and the long help of the fields whose help would not fit.
The estimate is recomputed on every change of any form field (data and training ones included: max length
and batch size drive activations); a config that does not fit gets its suggestions as Apply buttons, the
fastest training first. Presets load into the whole form, the form saves as a preset YAML, and "CLI command"
prints the same run for `python -m studio train`.
"""

from __future__ import annotations

import dataclasses
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from studio.architectures import CATALOGUE
from studio.config import RunConfig
from studio.errors import StudioError
from studio.methods import ADAPTER_METHODS, METHODS
from studio.presets import PRESETS_DIR, names
from studio.ui.feedback import clears, guard, import_engine_libraries, marks, message_slot
from studio.ui.form import ConfigForm, comma_list, joined
from studio.ui.formatting import gigabytes, lr_find_md
from studio.ui.session import Session, handler

MEASURED = {"process_rss": "the process's memory (RSS)", "cuda_device": "GPU memory reserved by torch + CUDA context"}
"""The probe's kinds of measurement (`studio.probe`) as the page says them."""


@dataclass
class Adapter:
    """The method-dependent settings: shown or hidden as the method changes."""

    quantization: gr.Group
    adapter: gr.Group
    rank: gr.Slider
    alpha: gr.Number
    dropout: gr.Slider


@dataclass
class Presets:
    """Load a preset (by name or file) into the form; save the form as a preset or a CLI command."""

    preset: gr.Dropdown
    load: gr.Button
    save: gr.Button
    cli: gr.Button
    saved: gr.File
    command: gr.Code
    preset_file: gr.File
    message: gr.Markdown


@dataclass
class LrFinder:
    """The learning-rate range test beside the learning-rate field: the curve, the suggestion, and Apply, which
    puts the suggestion in the field."""

    find: gr.Button
    text: gr.Markdown
    """The suggestion, the rule, the cost and the caveats."""
    result: gr.Group
    """The curve and Apply: hidden until a test has run."""
    plot: gr.Plot
    apply: gr.Button
    suggested: gr.State
    """The last suggested rate (None before a test)."""


ADVICE_BUTTONS = 4
"""Apply buttons under the estimate: the suggestions past the fourth are rarer than the screen is tall."""


@dataclass
class Advice:
    """What would make a config that does not fit fit: a button per suggestion, the fastest training first."""

    buttons: list[gr.Button]
    items: gr.State
    """The suggestions the buttons show, as dicts (`memory_advice.Suggestion`'s fields)."""


@dataclass
class ModelTab:
    model: gr.Dropdown
    method: gr.Radio
    max_length: gr.Slider
    """data.max_length, beside the estimate it drives; the Data tab shows the same field (kept in step)."""
    advanced: gr.Accordion
    adapter: Adapter
    lr_finder: LrFinder
    device_line: gr.Markdown
    memory_plot: gr.Plot
    memory_text: gr.Markdown
    advice: Advice
    measure: gr.Button
    probe_text: gr.Markdown
    presets: Presets
    message: gr.Markdown
    """Why the last action of the tab failed (empty after a new try), by the preset buttons."""

    @property
    def estimate_outputs(self) -> list[Any]:
        """The estimate's: clients get the first three (a State is not returned to them)."""
        return [self.device_line, self.memory_plot, self.memory_text, self.advice.items]


def build(session: Session) -> ModelTab:
    form = session.form
    with gr.Row():
        with gr.Column(scale=3):
            model, method = _model_and_method(form)
            lr_finder, max_length = _basics(form)
            with gr.Accordion("Advanced: the method's settings, schedule, optimizer, loss, evaluation",
                              open=False, elem_id="model-advanced") as advanced:  # fmt: skip
                adapter = _method_settings(form)
                _advanced(form)
        with gr.Column(scale=2):
            device_line = gr.Markdown(elem_id="device-line")
            memory_plot = gr.Plot(label="Memory estimate", show_label=False)
            memory_text = gr.Markdown(elem_id="memory-text")
            advice = Advice([gr.Button(visible=False, size="sm", elem_id=f"advice-{i}") for i in range(ADVICE_BUTTONS)],
                            gr.State([]))  # fmt: skip
            with gr.Row():
                measure = gr.Button("Measure: train 3 real steps here", size="sm", elem_id="probe")
            probe_text = gr.Markdown(elem_id="probe-text")
            presets = _presets(session)
    tab = ModelTab(model, method, max_length, advanced, adapter, lr_finder, device_line, memory_plot, memory_text,
                   advice, measure, probe_text, presets, presets.message)  # fmt: skip
    _wire(session, tab)
    return tab


def _model_and_method(form: ConfigForm) -> tuple[Any, Any]:
    with gr.Row():
        model = form.field(
            "model.name",
            gr.Dropdown,
            allow_custom_value=True,
            label="Model",
            scale=2,
            choices=[
                (f"{c.alias} ({c.params_m:,.0f}M, {c.family}){' — ' + c.note if c.note else ''}", c.alias)
                for c in CATALOGUE
            ],
            info="A studio model, or any Hugging Face id / local folder of a supported family.",
        )
        method = form.field(
            "method.name",
            gr.Radio,
            label="Method",
            scale=2,
            info="full: every weight; LoRA / IA3: small adapters; QLoRA: LoRA on a 4/8-bit base.",
        )
    return model, method


def _method_settings(form: ConfigForm) -> Adapter:
    initial = form.initial["method"]["name"]
    with gr.Group(visible=METHODS[initial].quantized) as quantization:
        gr.Markdown("**Quantization** (QLoRA, bitsandbytes)")
        with gr.Row():
            form.field("method.bits", gr.Radio, label="bits")
            form.field("method.quant_type", gr.Radio, label="4-bit type")
            form.field("method.double_quant", gr.Checkbox, label="double quantization")
            form.field("method.compute_dtype", gr.Dropdown, label="compute dtype")
    with gr.Group(visible=initial in ADAPTER_METHODS) as adapter:
        gr.Markdown("**Adapter**")
        with gr.Row():
            lora = {"visible": METHODS[initial].rank}
            rank = form.field("method.r", gr.Slider, minimum=1, maximum=256, step=1, label="LoRA rank r", **lora)
            alpha = form.field("method.alpha", gr.Number, label="LoRA alpha", minimum=0.01, **lora)
            dropout = form.field(
                "method.dropout", gr.Slider, minimum=0, maximum=0.5, step=0.01, label="LoRA dropout", **lora
            )
        with gr.Row():
            form.field("method.placement", gr.Dropdown, label="placement", info="Which layers get adapters.")
            form.field(
                "method.target_modules",
                gr.Textbox,
                to_config=comma_list,
                to_ui=joined,
                label="custom target modules",
                info="Comma-separated names (placement: custom).",
            )
    form.field("method.freeze_layers", gr.Number, minimum=0, precision=0, label="frozen lower layers",
               info="Keep the embeddings and this many bottom layers as they are (full: frozen; adapters: "
                    "none there). The backward pass stops above them: faster, less memory. 0: all train.")  # fmt: skip
    return Adapter(quantization, adapter, rank, alpha, dropout)


def _basics(form: ConfigForm) -> tuple[LrFinder, Any]:
    """What a first run needs: the speed profile, epochs, batch, learning rate (and its range test), max length."""
    form.field("train.speed", gr.Radio, label="speed profile",
               info="fast: the fastest settings that fit the GPU (shown on the right); frugal: near the least "
                    "memory, as fast as that allows; as_set: exactly the form (on a CPU all three train as "
                    "set)")  # fmt: skip
    with gr.Row():
        form.field("train.epochs", gr.Number, minimum=0.01, info="Passes over the training texts.")
        form.field("train.batch_size", gr.Number, minimum=1, label="batch size", info="Texts per step on the device.")
        form.field("train.grad_accum", gr.Number, minimum=1, label="grad accumulation",
                   info="Batches per update: effective batch = batch x this.")  # fmt: skip
    with gr.Row():
        form.field("train.learning_rate", gr.Number, label="learning rate")
        find = gr.Button("Find a learning rate", size="sm", scale=0, min_width=150, elem_id="lr-find")
        max_length = form.field("data.max_length", gr.Slider, minimum=16, maximum=4096, step=8, scale=2,
                                label="Max length (tokens)", elem_id="model-max-length",
                                info="Longer texts are cut. Memory grows with it.")  # fmt: skip
    text = gr.Markdown(elem_id="lr-find-text")  # visible from the start: it shows the test is running
    with gr.Group(visible=False) as result:
        plot = gr.Plot(label="Learning-rate range test", show_label=False)
        apply = gr.Button("Apply: set the learning rate to the suggestion", size="sm")
    return LrFinder(find, text, result, plot, apply, gr.State(None)), max_length


LONG_HELP = ("train.speed", "train.half_activations", "train.expandable_segments", "train.stop_on_collapse",
             "train.class_weights", "train.metric_for_best", "method.placement")  # fmt: skip
"""Fields whose help is too long for a box: a short line there, the whole of it at the end of Advanced."""


def _advanced(form: ConfigForm) -> None:
    """Every other training knob (short help; the long ones in full below them)."""
    with gr.Row():
        form.field("train.max_steps", gr.Number, minimum=1)
        form.field("train.scheduler", gr.Dropdown)
        form.field("train.warmup_ratio", gr.Slider, minimum=0, maximum=0.5, step=0.01)
        form.field("train.weight_decay", gr.Number, minimum=0)
    with gr.Row():
        form.field("train.optimizer", gr.Dropdown)
        form.field("train.precision", gr.Dropdown)
        form.field("train.gradient_checkpointing", gr.Checkbox, label="gradient checkpointing")
        form.field("train.early_stopping_patience", gr.Number, minimum=1, label="early stopping patience")
    with gr.Row():
        form.field("train.length_grouping", gr.Checkbox, label="length-grouped batches")
        form.field("train.torch_compile", gr.Checkbox, label="torch.compile")
        form.field("train.half_activations", gr.Checkbox, label="16-bit activations", info="Less activation memory.")
        form.field("train.expandable_segments", gr.Checkbox, label="expandable GPU memory",
                   info="Less memory stranded.")  # fmt: skip
        form.field("train.stop_on_collapse", gr.Checkbox, label="stop a run that is not learning",
                   info="It evaluates and saves.")  # fmt: skip
    with gr.Row():
        form.field("train.class_weights", gr.Textbox, label="class weights", to_config=weights_to_config,
                   to_ui=weights_to_ui, info="none, balanced, or label: weight, ...")  # fmt: skip
        form.field("train.loss", gr.Dropdown, info="cross_entropy, or focal for hard examples.")
        form.field("train.focal_gamma", gr.Number, minimum=0, label="focal gamma")
        form.field("train.metric_for_best", gr.Dropdown, label="best-model metric",
                   info="Picks the best checkpoint.")  # fmt: skip
    with gr.Row():
        form.field("train.eval_strategy", gr.Radio, label="evaluate every")
        form.field("train.eval_steps", gr.Number, minimum=1)
        form.field("train.logging_steps", gr.Number, minimum=1)
        form.field("seed", gr.Number, minimum=0)
    gr.Markdown(long_help_md(), elem_id="model-long-help")


def _presets(session: Session) -> Presets:
    with gr.Accordion("Presets", open=True):
        preset = gr.Dropdown(names(), value=session.preset_name, label="Preset", info="Saved configs in presets/.")
        with gr.Row():
            load = gr.Button("Load preset", size="sm")
            save = gr.Button("Save as preset YAML", size="sm")
            cli = gr.Button("CLI command", size="sm")
        message = message_slot("model-message")
        saved = gr.File(label="Preset YAML", interactive=False, visible=False)
        command = gr.Code(language="shell", label="Run it from a terminal", visible=False, lines=3)
        preset_file = gr.File(label="Load a preset YAML", file_types=[".yaml", ".yml"], height=100)
    return Presets(preset, load, save, cli, saved, command, preset_file, message)


def _wire(session: Session, tab: ModelTab) -> None:
    form, a, p = session.form, tab.adapter, tab.presets
    tab.method.change(handler(show_for, a), tab.method, [a.quantization, a.adapter, a.rank, a.alpha, a.dropout],
                      show_progress="hidden")  # fmt: skip
    page = {session.base, session.num_labels, session.train_rows, *form.components}
    gr.on(
        [c.change for c in form.components] + [session.num_labels.change, session.train_rows.change],
        handler(estimate, session),
        page,
        tab.estimate_outputs,
        trigger_mode="always_last",
        show_progress="hidden",
        api_name="estimate",
    )
    advice = tab.advice
    advice.items.change(show_advice, advice.items, advice.buttons, show_progress="hidden")
    for i, button in enumerate(advice.buttons):
        button.click(handler(apply_advice, session, tab, i), advice.items,
                     [*form.components, tab.advanced, tab.message], show_progress="hidden")  # fmt: skip
    shown = form.component("data.max_length")  # the Data tab's, when it is built: one field, kept in step
    if shown is not tab.max_length:  # `input`: a person's moves only, so the two never set each other off
        tab.max_length.input(lambda v: v, tab.max_length, shown, show_progress="hidden")
        shown.input(lambda v: v, shown, tab.max_length, show_progress="hidden")
    said = tab.message  # every action below says a failure here, by the preset buttons, and outlines its field
    for trigger in (tab.measure.click, tab.lr_finder.find.click, tab.lr_finder.apply.click, p.load.click,
                    p.preset_file.upload, p.save.click, p.cli.click):  # fmt: skip
        clears(trigger, said)
    marks(said, session)
    tab.measure.click(handler(measure_steps, session, tab), page, [tab.probe_text, said], api_name="probe")
    lr = tab.lr_finder
    lr.find.click(handler(find_learning_rate, session, tab), {session.base, *form.components},
                  [lr.text, lr.result, lr.plot, lr.suggested, said], api_name="lr_find")  # fmt: skip
    lr.apply.click(handler(apply_rate, tab), lr.suggested, [form.component("train.learning_rate"), said],
                   api_name="apply_lr")  # fmt: skip
    loaded = [session.base, session.base_preset, *form.components, said]
    p.load.click(handler(load_named, session, tab), p.preset, loaded, api_name="load_preset", show_progress_on=said)
    p.preset_file.upload(handler(load_file, session, tab), p.preset_file, loaded, show_progress_on=said)
    p.save.click(handler(save_yaml, session, tab), {session.base, *form.components}, [p.saved, said],
                 api_name="save_preset")  # fmt: skip
    p.cli.click(handler(cli_command, session, tab), {session.base, session.base_preset, *form.components},
                [p.command, said], api_name="cli")  # fmt: skip


# ---- handlers --------------------------------------------------------------------------------------------------
def show_for(a: Adapter, name: str) -> dict[Any, Any]:
    """Show the settings of method `name`: quantization for QLoRA, the adapter's for LoRA/QLoRA/IA3."""
    lora = METHODS[name].rank
    return {
        a.quantization: gr.update(visible=METHODS[name].quantized),
        a.adapter: gr.update(visible=name in ADAPTER_METHODS),
        a.rank: gr.update(visible=lora),
        a.alpha: gr.update(visible=lora),
        a.dropout: gr.update(visible=lora),
    }


def estimate(session: Session, values: dict[Any, Any]) -> tuple[str, Any, str, list[dict[str, Any]]]:
    """(device line, memory breakdown plot, text, suggestions) of the config the page shows, as the speed profile
    would train it; the suggestions (what would make it fit, the fastest training first) become Apply buttons.
    A half-typed bad value is said in the text, with no pop-up: this runs on every keystroke."""
    from studio import plots
    from studio.hardware import describe, detect
    from studio.memory_advice import suggestions
    from studio.speed_plan import planned_estimate

    import_engine_libraries()
    device = detect()
    try:
        asked = session.read(values)
        num_labels = session.labels(values)
        e, speed = planned_estimate(asked, num_labels, device, values.get(session.train_rows))
        config = speed.config  # what would train: the estimate is of that
    except StudioError as err:
        return f"**{describe(device)}**", plots.empty("no estimate"), f"⚠️ {session.form.words(str(err))}", []
    text = _estimate_text(e, config) + session.form.words(_plan_text(speed))  # the page's names for its fields
    items = [] if e.fits else [dataclasses.asdict(s) for s in suggestions(config, num_labels, device)]
    if not e.fits:
        text += _fit_text(items)
    return f"**{describe(device)}**", plots.memory_breakdown(e.parts, e.device.free_mb, e.device.name), text, items


def show_advice(items: list[dict[str, Any]]) -> list[Any]:
    """A button per suggestion (the first ADVICE_BUTTONS), the others hidden."""
    items = (items or [])[:ADVICE_BUTTONS]
    labels = [f"Apply: {s['change']}: ~{gigabytes(s['total_mb'])}" for s in items]
    return [gr.update(value=label, visible=True) for label in labels] + [
        gr.update(visible=False) for _ in range(ADVICE_BUTTONS - len(labels))
    ]


BASICS = {"model.name", "method.name", "train.speed", "train.epochs", "train.batch_size", "train.grad_accum",
          "train.learning_rate", "data.max_length"}  # fmt: skip
"""The fields shown outside Advanced."""


@guard
def apply_advice(session: Session, tab: ModelTab, index: int, items: list[dict[str, Any]]) -> dict[Any, Any]:
    """Suggestion `index` set in the form's fields (batch and accumulation, checkpointing, ...): the estimate
    follows, as it does any change. Advanced opens when a field it sets is there, so the change is in sight."""
    if not items or index >= len(items):
        raise StudioError("this suggestion is gone: the estimate changed since; pick one of those shown now")
    changes = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in items[index]["overrides"])}
    out: dict[Any, Any] = {}
    for b in session.form.bindings:
        if b.path in changes:
            value = b.to_ui(changes[b.path])
            out.update(zip(b.components, value if len(b.components) > 1 else (value,), strict=True))
    if not out:
        raise StudioError(f"the form has no field for {', '.join(changes)}; use the CLI command")
    if set(changes) - BASICS:
        out[tab.advanced] = gr.update(open=True)
    gr.Info(f"Set {items[index]['change']}")
    return out


@guard
def measure_steps(session: Session, tab: ModelTab, values: dict[Any, Any]) -> dict[Any, Any]:
    """Train 3 real steps of what would train and compare the measured peak with the estimate."""
    from studio.probe import CPU_RUN_GROWTH
    from studio.speed_plan import planned_estimate

    num_labels = session.labels(values)
    _, speed = planned_estimate(session.read(values), num_labels, train_rows=values.get(session.train_rows))
    r = session.jobs.probe(speed.config, num_labels)  # measure what would train
    largest = f" · largest batch from the measurement ~{r.largest_batch:,}" if r.largest_batch else ""
    cpu_note = ""
    if r.measured_kind == "process_rss":
        cpu_note = f" On a CPU this is the whole process's memory, this page's own included, and {CPU_RUN_GROWTH}."
    return {tab.probe_text: (
        f"**Measured** {r.measured_mb:,.0f} MB ({MEASURED.get(r.measured_kind, r.measured_kind)}) in {r.steps} "
        "steps with "
        f"full-length batches vs **estimate** {r.estimate.total_mb:,.0f} MB ({r.error_pct:+.1f}%){largest} · "
        f"{r.seconds:.0f} s  \n{error_words(r.error_pct)}{cpu_note}"
    )}  # fmt: skip


def error_words(pct: float) -> str:
    """The sign of "estimate vs measured" in words: above errs on the safe side, below leaves less room."""
    if abs(pct) < 1:
        return "The estimate was within 1% of what the run measured."
    if pct > 0:
        return f"The estimate was {pct:.0f}% above what the run measured: it errs on the safe side."
    return (
        f"The estimate was {-pct:.0f}% below what the run measured: leave that much room (a smaller batch) "
        "when a config only just fits."
    )


@guard
def find_learning_rate(session: Session, tab: ModelTab, values: dict[Any, Any]) -> dict[Any, Any]:
    """The learning-rate range test of what the form would train (a short run with a rising rate, in the
    training slot): its curve and the suggested rate, which Apply puts in the learning-rate field."""
    lr = tab.lr_finder
    r = session.jobs.lr_find(session.read(values))
    return {lr.result: gr.update(visible=True), lr.plot: r.figure(), lr.text: lr_find_md(r), lr.suggested: r.suggested}


@guard
def apply_rate(tab: ModelTab, suggested: float | None) -> tuple[float, str]:
    """The suggested rate, for the learning-rate field (and an empty message)."""
    if not suggested:
        raise StudioError("find a learning rate first (the button beside the learning rate)")
    gr.Info(f"learning rate set to {suggested:.2g}")
    return suggested, ""  # the learning-rate field, the tab's message


@guard
def load_named(session: Session, tab: ModelTab, name: str | None) -> dict[Any, Any]:
    """The preset `name` of presets/ fills the form (and becomes the base the CLI command starts from)."""
    if not name:
        raise StudioError("pick a preset in the list first")
    config = RunConfig.from_yaml(PRESETS_DIR / f"{name}.yaml")
    gr.Info(f"Loaded preset {name}: {config.description or config.name}")
    return {session.base: config.to_dict(), session.base_preset: name, **session.form.updates(config)}


@guard
def load_file(session: Session, tab: ModelTab, path: str | None) -> dict[Any, Any]:
    """An uploaded preset YAML fills the form; a problem with it names the file as it was uploaded."""
    if not path:
        return gr.skip()
    try:
        config = RunConfig.from_yaml(path)
    except StudioError as e:  # not Gradio's temporary copy (/tmp/gradio/<hash>/x.yaml): the file the user chose
        e.args = (str(e).replace(str(path), Path(path).name),)  # keeps the field it names (a ConfigError's)
        raise
    gr.Info(f"Loaded {Path(path).name}")
    return {session.base: config.to_dict(), session.base_preset: None, **session.form.updates(config)}


@guard
def save_yaml(session: Session, tab: ModelTab, values: dict[Any, Any]) -> dict[Any, Any]:
    """The form as a preset YAML to download."""
    config = session.read(values)
    folder = Path(tempfile.mkdtemp(prefix="studio-preset-"))
    path = folder / f"{config.name}.yaml"
    config.to_yaml(path, header=f"{config.description or config.name}\nRun: python -m studio train {path.name}")
    return {tab.presets.saved: gr.update(value=str(path), visible=True)}


@guard
def cli_command(session: Session, tab: ModelTab, values: dict[Any, Any]) -> dict[Any, Any]:
    """The form as a `python -m studio train` command line."""
    config = session.read(values)
    return {tab.presets.command: gr.update(value=command_for(config, values[session.base_preset]), visible=True)}


# ---- formatting ------------------------------------------------------------------------------------------------
def command_for(config: RunConfig, preset_name: str | None) -> str:
    """`python -m studio train <preset> --set k=v ...`: the overrides that turn the preset into `config`."""
    if preset_name is None:
        return f"# save the form as a preset YAML (button above), then:\npython -m studio train {config.name}.yaml"
    base = RunConfig.from_yaml(PRESETS_DIR / f"{preset_name}.yaml").to_dict()
    sets = [f"--set {shlex.quote(f'{path}={_yaml_value(value)}')}" for path, value in _diff(base, config.to_dict())]
    return " \\\n    ".join([f"python -m studio train {preset_name}", *sets])


def _diff(base: dict, new: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in new.items():
        path = f"{prefix}{key}"
        old = base.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out += _diff(old, value, f"{path}.")
        elif value != old:
            out.append((path, value))
    return out


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def long_help_md() -> str:
    """The whole help of the fields whose box shows a short line (LONG_HELP), as the config documents it."""
    from studio.config import SECTIONS, field_help

    rows = []
    for path in LONG_HELP:
        section, _, name = path.rpartition(".")
        rows.append(f"- **{name.replace('_', ' ')}** (`{path}`): {field_help(SECTIONS[section], name)}")
    return "**About these settings**\n\n" + "\n".join(rows)


def _plan_text(speed: Any) -> str:
    note = speed.note.replace("speed ", "Speed profile ", 1) if speed.note.startswith("speed ") else speed.note
    if not speed.choices:
        return f"\n\n**{note}**"
    rows = "\n".join(f"| `{c.field}` | {c.before} | **{c.after}** | {c.why} |" for c in speed.choices)
    return (
        f"\n\n**{note}**; it trains with these changes (set speed to as_set to train exactly the "
        f"form):\n\n| setting | asked | trains with | why |\n|---|---|---|---|\n{rows}"
    )


def _fit_text(items: list[dict[str, Any]]) -> str:
    """What would make a config that does not fit fit: the Apply buttons below the text say each."""
    if not items:
        return "\n\n**It does not fit**, and no simple change makes it: pick a smaller model."
    return (
        "\n\n**It does not fit. Any one of these would**, the fastest training first (Apply sets it in the form; "
        "the CLI command button gives the same for a terminal):"
    )


def _estimate_text(e: Any, config: RunConfig) -> str:
    where = e.device.name if e.device.kind == "cuda" else "system RAM (CPU only)"
    verdict = "fits" if e.fits else "does NOT fit"
    lines = [
        f"### {gigabytes(e.total_mb)} estimated — {verdict} in {where} ({e.device.free_mb / 1024:.1f} GB free)",
        f"**Trainable parameters:** {e.trainable_params:,} of {e.total_params:,} "
        f"({e.trainable_params / max(e.total_params, 1):.2%})  ",
        f"**Batch** {config.train.batch_size} x grad accumulation {config.train.grad_accum} = "
        f"{config.train.effective_batch_size} per step, {config.data.max_length} tokens at most  ",
    ]
    if e.adapter_targets:  # follows the model: the same placement means other modules in another family
        lines.append(f"**Adapters on:** {', '.join(e.adapter_targets)}  ")
    if e.largest_batch is not None:
        lines.append(f"**Largest batch that fits:** {e.largest_batch}  ")
    lines += [f"- {n}" for n in e.notes]
    return "\n".join(lines)


def weights_to_config(text: Any) -> Any:
    """'none', 'balanced' or 'pos: 3, neg: 1' (the class-weights box) as the config takes it; text that is
    none of these goes through as typed, so the config's check names it."""
    value = str(text or "").strip()
    if value.lower() in ("", "none", "balanced"):
        return value.lower() or "none"
    if value.startswith("{"):  # a mapping as a preset writes it: {pos: 3, neg: 1}
        try:
            mapping = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return mapping if isinstance(mapping, dict) else value
    pairs = [p.partition(":") for p in value.split(",") if p.strip()]
    if not all(sep for _, sep, _ in pairs):
        return value
    try:
        return {label.strip(): float(weight) for label, _, weight in pairs}
    except ValueError:
        return value


def weights_to_ui(value: Any) -> str:
    """The config's class weights as the box shows them."""
    if isinstance(value, dict):
        return ", ".join(f"{label}: {weight:g}" for label, weight in value.items())
    return str(value)
