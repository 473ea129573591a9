"""Model & method tab: model, method, quantization, adapter and training knobs, with a live memory estimate.

The estimate is recomputed on every change of any form field (data and training ones included: max length
and batch size drive activations). Presets load into the whole form, the form saves as a preset YAML, and
"CLI command" prints the same run for `python -m studio train`.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from studio.architectures import CATALOGUE
from studio.config import RunConfig
from studio.errors import StudioError
from studio.methods import ADAPTER_METHODS, METHODS
from studio.presets import PRESETS_DIR, names
from studio.ui.context import Context
from studio.ui.feedback import guard, import_engine_libraries
from studio.ui.form import comma_list, joined


def build(ctx: Context, session: dict[str, Any]) -> dict[str, Any]:
    form = ctx.form
    with gr.Row():
        with gr.Column(scale=3):
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
            initial = ctx.form.initial["method"]["name"]
            with gr.Group(visible=METHODS[initial].quantized) as quant_group:
                gr.Markdown("**Quantization** (QLoRA, bitsandbytes)")
                with gr.Row():
                    form.field("method.bits", gr.Radio, label="bits")
                    form.field("method.quant_type", gr.Radio, label="4-bit type")
                    form.field("method.double_quant", gr.Checkbox, label="double quantization")
                    form.field("method.compute_dtype", gr.Dropdown, label="compute dtype")
            with gr.Group(visible=initial in ADAPTER_METHODS) as adapter_group:
                gr.Markdown("**Adapter**")
                with gr.Row():
                    lora = {"visible": METHODS[initial].rank}
                    rank = form.field(
                        "method.r", gr.Slider, minimum=1, maximum=256, step=1, label="LoRA rank r", **lora
                    )
                    alpha = form.field("method.alpha", gr.Number, label="LoRA alpha", minimum=0.01, **lora)
                    dropout = form.field(
                        "method.dropout", gr.Slider, minimum=0, maximum=0.5, step=0.01, label="LoRA dropout", **lora
                    )
                with gr.Row():
                    form.field("method.placement", gr.Dropdown, label="placement")
                    form.field(
                        "method.target_modules",
                        gr.Textbox,
                        to_config=comma_list,
                        to_ui=joined,
                        label="custom target modules",
                        info="Comma-separated names (placement: custom).",
                    )
            with gr.Accordion("Training", open=True):
                with gr.Row():
                    form.field("train.speed", gr.Radio, label="speed profile", scale=3,
                               info="fast: the studio picks the fastest settings that fit the GPU (shown on the "
                                    "right); frugal: the least memory; as_set: exactly the settings below")  # fmt: skip
                    form.field("train.length_grouping", gr.Checkbox, label="length-grouped batches")
                    form.field("train.torch_compile", gr.Checkbox, label="torch.compile")
                    form.field("train.half_activations", gr.Checkbox, label="16-bit activations")
                    form.field("train.expandable_segments", gr.Checkbox, label="expandable GPU memory")
                with gr.Row():
                    form.field("train.epochs", gr.Number, minimum=0.01)
                    form.field("train.max_steps", gr.Number, minimum=1)
                    form.field("train.batch_size", gr.Number, minimum=1, label="batch size")
                    form.field("train.grad_accum", gr.Number, minimum=1, label="grad accumulation")
                with gr.Row():
                    form.field("train.learning_rate", gr.Number, label="learning rate")
                    form.field("train.scheduler", gr.Dropdown)
                    form.field("train.warmup_ratio", gr.Slider, minimum=0, maximum=0.5, step=0.01)
                    form.field("train.weight_decay", gr.Number, minimum=0)
                with gr.Row():
                    form.field("train.optimizer", gr.Dropdown)
                    form.field("train.precision", gr.Dropdown)
                    form.field("train.gradient_checkpointing", gr.Checkbox, label="gradient checkpointing")
                    form.field("train.early_stopping_patience", gr.Number, minimum=1, label="early stopping patience")
                with gr.Row():
                    form.field("train.eval_strategy", gr.Radio, label="evaluate every")
                    form.field("train.eval_steps", gr.Number, minimum=1)
                    form.field("train.logging_steps", gr.Number, minimum=1)
                    form.field("seed", gr.Number, minimum=0)
        with gr.Column(scale=2):
            device_line = gr.Markdown(elem_id="device-line")
            memory_plot = gr.Plot(label="Memory estimate", show_label=False)
            memory_text = gr.Markdown(elem_id="memory-text")
            with gr.Row():
                measure = gr.Button("Measure: train 3 real steps here", size="sm", elem_id="probe")
            probe_text = gr.Markdown(elem_id="probe-text")
            with gr.Accordion("Presets", open=True):
                preset = gr.Dropdown(names(), value=ctx.preset_name, label="Preset", info="Saved configs in presets/.")
                with gr.Row():
                    load = gr.Button("Load preset", size="sm")
                    save = gr.Button("Save as preset YAML", size="sm")
                    cli = gr.Button("CLI command", size="sm")
                saved = gr.File(label="Preset YAML", interactive=False, visible=False)
                command = gr.Code(language="shell", label="Run it from a terminal", visible=False, lines=3)
                preset_file = gr.File(label="Load a preset YAML", file_types=[".yaml", ".yml"], height=100)

    # ---- visibility follows the method -------------------------------------------------------------------
    def show_for(name: str) -> tuple:
        lora = METHODS[name].rank
        return (
            gr.update(visible=METHODS[name].quantized),
            gr.update(visible=name in ADAPTER_METHODS),
            gr.update(visible=lora),
            gr.update(visible=lora),
            gr.update(visible=lora),
        )

    method.change(show_for, method, [quant_group, adapter_group, rank, alpha, dropout], show_progress="hidden")

    # ---- live memory estimate --------------------------------------------------------------------------
    def estimate(values: dict) -> tuple:
        from studio import plots
        from studio.hardware import describe, detect
        from studio.speed import planned_estimate

        import_engine_libraries()
        device = detect()
        try:
            asked = form.read(values[session["base"]], values)
            num_labels = max(2, int(values[session["num_labels"]] or 2))
            e, speed = planned_estimate(asked, num_labels, device, values.get(session["train_rows"]))
            config = speed.config  # what would train: the estimate is of that
        except StudioError as err:  # half-typed values are normal here: say what is wrong, no pop-up
            return f"**{describe(device)}**", plots.empty("no estimate"), f"⚠️ {err}"
        text = _estimate_text(e, config) + _plan_text(speed)
        if not e.fits:
            from studio.fit import suggestions

            items = suggestions(config, num_labels, device)
            text += (
                "\n\n**It does not fit. Any one of these would:**\n"
                + "\n".join(f"- {s.change}: ~{s.total_mb / 1024:.2f} GB (`{' '.join(s.overrides)}`)" for s in items)
                if items
                else "\n\n**It does not fit**, and no simple change makes it: pick a smaller model."
            )
        return f"**{describe(device)}**", plots.memory_breakdown(e.parts, e.device.free_mb, e.device.name), text

    triggers = [c.change for c in form.components] + [session["num_labels"].change, session["train_rows"].change]
    gr.on(
        triggers,
        estimate,
        {session["base"], session["num_labels"], session["train_rows"], *form.components},
        [device_line, memory_plot, memory_text],
        trigger_mode="always_last",
        show_progress="hidden",
        api_name="estimate",
    )

    @guard
    def measure_steps(values: dict) -> str:
        from studio.speed import planned_estimate

        num_labels = max(2, int(values[session["num_labels"]] or 2))
        asked = form.read(values[session["base"]], values)
        _, speed = planned_estimate(asked, num_labels, train_rows=values.get(session["train_rows"]))
        r = ctx.jobs.probe(speed.config, num_labels)  # measure what would train
        largest = f" · largest batch from the measurement ~{r.largest_batch:,}" if r.largest_batch else ""
        return (
            f"**Measured** {r.measured_mb:,.0f} MB ({r.measured_kind.replace('_', ' ')}) in {r.steps} steps with "
            f"full-length batches vs **estimate** {r.estimate.total_mb:,.0f} MB ({r.error_pct:+.1f}%){largest} · "
            f"{r.seconds:.0f} s"
        )

    measure.click(measure_steps, {session["base"], session["num_labels"], session["train_rows"], *form.components},
                  probe_text,
                  api_name="probe")  # fmt: skip

    # ---- presets ---------------------------------------------------------------------------------------
    outputs = [session["base"], session["preset_name"], *form.components]

    @guard
    def load_named(name: str | None) -> dict:
        if not name:
            raise StudioError("pick a preset in the list first")
        config = RunConfig.from_yaml(PRESETS_DIR / f"{name}.yaml")
        gr.Info(f"Loaded preset {name}: {config.description or config.name}")
        return {session["base"]: config.to_dict(), session["preset_name"]: name, **form.updates(config)}

    @guard
    def load_file(path: str | None) -> dict:
        if not path:
            return {}
        config = RunConfig.from_yaml(path)
        gr.Info(f"Loaded {Path(path).name}")
        return {session["base"]: config.to_dict(), session["preset_name"]: None, **form.updates(config)}

    load.click(load_named, preset, outputs, api_name="load_preset")
    preset_file.upload(load_file, preset_file, outputs)

    @guard
    def save_yaml(values: dict) -> dict:
        config = form.read(values[session["base"]], values)
        folder = Path(tempfile.mkdtemp(prefix="studio-preset-"))
        path = folder / f"{config.name}.yaml"
        config.to_yaml(path, header=f"{config.description or config.name}\nRun: python -m studio train {path.name}")
        return gr.update(value=str(path), visible=True)

    save.click(save_yaml, {session["base"], *form.components}, saved, api_name="save_preset")

    @guard
    def cli_command(values: dict) -> dict:
        config = form.read(values[session["base"]], values)
        return gr.update(value=command_for(config, values[session["preset_name"]]), visible=True)

    cli.click(cli_command, {session["base"], session["preset_name"], *form.components}, command, api_name="cli")
    return {
        "model": model,
        "method": method,
        "memory_text": memory_text,
        "load_preset": load,
        "preset": preset,
        "estimate_outputs": [device_line, memory_plot, memory_text],
        "estimate": estimate,
    }


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


def _plan_text(speed: Any) -> str:
    if not speed.choices:
        return f"\n\n**{speed.note}**"
    rows = "\n".join(f"| `{c.field}` | {c.before} | **{c.after}** | {c.why} |" for c in speed.choices)
    return (
        f"\n\n**{speed.note}**; it trains with these changes (set speed to as_set to train exactly the "
        f"form):\n\n| setting | asked | trains with | why |\n|---|---|---|---|\n{rows}"
    )


def _estimate_text(e: Any, config: RunConfig) -> str:
    gb = e.total_mb / 1024
    where = e.device.name if e.device.kind == "cuda" else "system RAM (CPU only)"
    verdict = "fits" if e.fits else "does NOT fit"
    lines = [
        f"### {gb:.2f} GB estimated — {verdict} in {where} ({e.device.free_mb / 1024:.1f} GB free)",
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
