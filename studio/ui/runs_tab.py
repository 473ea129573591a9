"""Runs tab: the registry as a table; compare runs' curves and accuracy vs memory; open, export, delete."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.config import RunConfig
from studio.errors import StudioError
from studio.ui.context import Context
from studio.ui.feedback import guard
from studio.ui.train_tab import results_md

COLUMNS = ["run", "status", "model", "method", "dataset", "accuracy", "F1 macro", "peak MB", "estimate err %",
           "train s", "trainable"]  # fmt: skip
CURVES = {  # label -> (where in the run view, key)
    "validation accuracy": ("evals", "accuracy"),
    "validation macro F1": ("evals", "f1_macro"),
    "validation loss": ("evals", "loss"),
    "training loss": ("train_loss", None),
}


def runs_table(ctx: Context) -> list[list]:
    """One row per run, newest first."""
    rows = []
    for r in ctx.registry.list():
        # The estimate's error is in eval.json, written when a run ends: only finished runs have one.
        summary = ctx.registry.summary(r.id) if r.accuracy is not None else None
        error = summary.memory.error_pct if summary is not None else None
        rows.append(
            [
                r.id,
                r.status,
                r.model,
                r.method,
                r.dataset,
                _round(r.accuracy, 4),
                _round(r.f1_macro, 4),
                _round(r.peak_memory_mb, 0),
                error,
                _round(r.train_seconds, 1),
                r.trainable_params,
            ]
        )
    return rows


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def run_choices(ctx: Context, with_model: bool = False) -> list[tuple[str, str]]:
    """(label, run id) pairs for dropdowns; `with_model` keeps runs that saved a model (for predicting)."""
    out = []
    for r in ctx.registry.list():
        if with_model and not (ctx.registry.run_dir(r.id) / "label_map.json").is_file():
            continue
        acc = f" · {r.accuracy:.1%}" if r.accuracy is not None else ""
        out.append((f"{r.id} · {r.status}{acc}", r.id))
    return out


def build(ctx: Context, session: dict[str, Any]) -> dict[str, Any]:
    with gr.Row():
        refresh = gr.Button("↻ Refresh", size="sm", scale=0)
        gr.Markdown("Click a row to select that run below. Runs trained from the CLI show up here too.")
    table = gr.Dataframe(
        headers=COLUMNS,
        value=lambda: runs_table(ctx),
        interactive=False,
        max_height=300,
        label="Runs",
        elem_id="runs-table",
    )
    with gr.Row():
        with gr.Column():
            compare = gr.Dropdown(
                label="Compare runs", multiselect=True, choices=run_choices(ctx), info="Overlay their curves."
            )
            curve = gr.Radio(list(CURVES), value="validation accuracy", label="Curve")
            overlay = gr.Plot(label="Curves", show_label=False)
        pareto = gr.Plot(label="Accuracy vs peak memory (all finished runs)", show_label=False)
    gr.Markdown("### One run")
    with gr.Row():
        selected = gr.Dropdown(label="Run", choices=run_choices(ctx), scale=3, elem_id="run-select")
        open_btn = gr.Button("Open in studio", scale=1)
        resume_btn = gr.Button("Resume", scale=1, elem_id="resume")
        delete_btn = gr.Button("Delete…", variant="stop", scale=1)
    with gr.Row(visible=False) as confirm_row:
        confirm_text = gr.Markdown()
        confirm = gr.Button("Yes, delete it and its files", variant="stop")
        cancel = gr.Button("Cancel")
    with gr.Row():
        details = gr.Markdown(elem_id="run-details")
        config_view = gr.Code(language="yaml", label="config.yaml", lines=12, max_lines=30)
    with gr.Accordion("Export: download, merge, push to the Hub", open=False):
        with gr.Row():
            download = gr.Button("Zip the adapter / model for download")
            merge = gr.Button("Merge LoRA/IA3 into the base and save")
        zip_file = gr.File(label="Download", interactive=False)
        with gr.Row():
            repo = gr.Textbox(label="Hub repo id", placeholder="your-name/my-classifier")
            token = gr.Textbox(
                label="Hugging Face token (write)", type="password", placeholder="hf_... or set HF_TOKEN"
            )
            private = gr.Checkbox(label="private", value=True)
            merged = gr.Checkbox(label="push the merged model", value=False)
            push = gr.Button("Push to the Hub")
        export_status = gr.Markdown()

    def refreshed(chosen: list[str] | None, one: str | None) -> tuple:
        choices = run_choices(ctx)
        ids = {c[1] for c in choices}
        return (
            runs_table(ctx),
            gr.update(choices=choices, value=[c for c in chosen or [] if c in ids]),
            gr.update(choices=choices, value=one if one in ids else None),
        )

    refresh.click(refreshed, [compare, selected], [table, compare, selected], api_name="runs")

    def pick_row(evt: gr.SelectData, rows: Any) -> Any:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return rows.iloc[row, 0] if hasattr(rows, "iloc") else rows[row][0]
        except (IndexError, KeyError):
            return gr.skip()

    table.select(pick_row, table, selected)

    @guard
    def draw_compare(run_ids: list[str] | None, which: str) -> tuple:
        from studio import plots, study_plots

        where, key = CURVES[which]
        series = {}
        for run_id in run_ids or []:
            view = ctx.jobs.view(run_id)
            if where == "evals":
                series[run_id] = [(e["step"], e[key]) for e in view.evals if key in e]
            else:
                series[run_id] = list(view.train_loss)
        overlay_fig = plots.runs_overlay(series, which) if series else plots.empty("pick runs to compare")
        return overlay_fig, study_plots.runs_pareto(ctx.registry.list())

    gr.on(
        [compare.change, curve.change, refresh.click],
        draw_compare,
        [compare, curve],
        [overlay, pareto],
        show_progress="hidden",
    )

    @guard
    def show(run_id: str | None) -> tuple:
        if not run_id:
            return "", ""
        record = ctx.registry.get(run_id)
        folder = ctx.registry.run_dir(run_id)
        config_text = (folder / "config.yaml").read_text(encoding="utf-8") if (folder / "config.yaml").is_file() else ""
        head = f"**{record.id}** · {record.status}" + (f" — {record.message}" if record.message else "")
        head += f"  \nfolder: `{folder}`"
        return head + "\n\n" + results_md(ctx.registry.summary(run_id)), config_text

    selected.change(show, selected, [details, config_view], show_progress="hidden")

    # ---- open in the studio: the run's config fills the Data / Model / Train forms ----------------------------
    form_outputs = [session["base"], session["preset_name"], *ctx.form.components]

    @guard
    def open_run(run_id: str | None) -> dict:
        if not run_id:
            raise StudioError("pick a run first")
        config = RunConfig.from_yaml(ctx.registry.run_dir(run_id) / "config.yaml")
        gr.Info(f"Loaded the config of {run_id} into the Data, Model and Train tabs")
        return {session["base"]: config.to_dict(), session["preset_name"]: None, **ctx.form.updates(config)}

    open_btn.click(open_run, selected, form_outputs)

    # ---- resume an interrupted run (killed, crashed) from its last checkpoint; the Train tab shows it ---------
    @guard
    def resume_run(run_id: str | None) -> str:
        if not run_id:
            raise StudioError("pick an interrupted run first")
        job = ctx.jobs.resume(run_id)
        gr.Info(f"Resuming {run_id} from its last checkpoint: watch it in the Train tab")
        return job.key

    # ---- delete, with confirmation ------------------------------------------------------------------------
    @guard
    def ask_delete(run_id: str | None) -> tuple:
        if not run_id:
            raise StudioError("pick a run to delete first")
        record = ctx.registry.get(run_id)
        return gr.update(
            visible=True
        ), f"Delete **{record.id}** ({record.status}) and its folder? This cannot be undone."

    @guard
    def do_delete(run_id: str | None, chosen: list[str] | None) -> tuple:
        if not run_id:
            raise StudioError("pick a run to delete first")
        ctx.registry.delete(run_id)
        ctx.predictors.forget(run_id)
        gr.Info(f"Deleted {run_id}")
        return (gr.update(visible=False), *refreshed([c for c in chosen or [] if c != run_id], None))

    delete_btn.click(ask_delete, selected, [confirm_row, confirm_text])
    cancel.click(lambda: gr.update(visible=False), None, confirm_row)
    confirm.click(do_delete, [selected, compare], [confirm_row, table, compare, selected], api_name="delete_run")

    # ---- export -------------------------------------------------------------------------------------------
    @guard
    def zip_run(run_id: str | None) -> str:
        from studio.export import export_zip

        if not run_id:
            raise StudioError("pick a run first")
        return str(export_zip(ctx.registry, run_id))

    @guard
    def merge_run(run_id: str | None) -> str:
        from studio.export import merge_adapter

        if not run_id:
            raise StudioError("pick a run first")
        return f"Merged model saved in `{merge_adapter(ctx.registry, run_id)}`"

    @guard
    def push_run(run_id: str | None, repo_id: str, hf_token: str, is_private: bool, push_merged: bool) -> str:
        from studio.export import push_to_hub

        if not run_id:
            raise StudioError("pick a run first")
        url = push_to_hub(
            ctx.registry, run_id, repo_id.strip(), hf_token.strip() or None, private=is_private, merged=push_merged
        )
        return f"Pushed to [{url}]({url})"

    download.click(zip_run, selected, zip_file)
    merge.click(merge_run, selected, export_status)
    push.click(push_run, [selected, repo, token, private, merged], export_status)
    return {"table": table, "refresh": refresh, "selected": selected, "compare": compare, "refreshed": refreshed,
            "resume": (resume_btn, resume_run)}  # fmt: skip
