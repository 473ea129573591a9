"""Compare tab: run a grid (a study) from a preset, watch it, and see its heatmap, methods and Pareto plots."""

from __future__ import annotations

import tempfile
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.presets import names
from studio.ui.context import Context
from studio.ui.feedback import guard

POINT_COLUMNS = ["#", "run", "memory estimate", "fits", "done before"]


def build(ctx: Context, session: dict[str, Any]) -> dict[str, Any]:
    gr.Markdown(
        "A **grid** is a base config plus axes (models, methods, ranks, label counts, seeds ...), run in the "
        "background: one run at a time, one per GPU on a machine with several, or more per GPU when you ask. "
        "Runs already completed with the same config are skipped, so a stopped grid resumes where it was. Grids "
        "live in `presets/grids/`; the CLI runs the same: `python -m studio sweep NAME`."
    )
    with gr.Row():
        grids = names(ctx.grids_dir)
        grid = gr.Dropdown(grids, value=(grids or [None])[0], label="Grid", scale=3, elem_id="grid-choice")
        preview = gr.Button("List its runs", scale=1)
        workers = gr.Number(1, label="Runs at a time per GPU", precision=0, minimum=1, maximum=16, scale=1,
                            info="more than 1: each run in its own process; pays off for small models")  # fmt: skip
        start = gr.Button("▶ Run the grid", variant="primary", scale=1, elem_id="grid-start")
        stop = gr.Button("■ Stop the grid", variant="stop", scale=1)
    description = gr.Markdown()
    points = gr.Dataframe(headers=POINT_COLUMNS, interactive=False, max_height=300, label="Runs of the grid")
    progress = gr.Markdown(elem_id="grid-progress")
    live = gr.Plot(label="Current run", show_label=False, visible=False)
    heatmap = gr.Plot(label="Heatmap", show_label=False)
    with gr.Row():
        methods = gr.Plot(label="Methods", show_label=False)
        efficiency = gr.Plot(label="Efficiency", show_label=False)
    with gr.Row():
        pareto = gr.Plot(label="Pareto: memory", show_label=False)
        pareto_time = gr.Plot(label="Pareto: time", show_label=False)
    with gr.Row():
        curves = gr.Plot(label="Curves", show_label=False)
        with gr.Column():
            table = gr.Dataframe(interactive=False, max_height=320, label="Aggregated over seeds")
            report = gr.Button("Write the report (HTML + Markdown + CSV + PNGs)")
            report_file = gr.File(label="report.html", interactive=False)
    plots_out = [heatmap, methods, efficiency, pareto, pareto_time, curves, table]
    timer = gr.Timer(3.0)

    def load_grid(name: str | None) -> Any:
        from studio.sweep import Grid

        if not name:
            raise StudioError("pick a grid first")
        return Grid.from_yaml(ctx.grids_dir / f"{name}.yaml")

    @guard
    def list_points(name: str | None) -> tuple:
        from studio.speed import planned_estimate

        g = load_grid(name)
        completed = {r.config_hash for r in ctx.registry.list(status="completed")}
        rows = []
        for p in g.points():
            balance = p.config.data.balance
            try:
                e, _ = planned_estimate(p.config, balance.num_labels if balance else 2)
                memory, fits = f"{e.total_mb / 1024:.2f} GB", "yes" if e.fits else "no"
            except StudioError as err:
                memory, fits = str(err)[:80], "?"
            rows.append([p.index + 1, p.key, memory, fits, "yes" if p.config.config_hash() in completed else ""])
        return f"**{g.name}**: {g.description} — {len(rows)} runs", rows

    preview.click(list_points, grid, [description, points], api_name="grid_points")

    @guard
    def start_grid(name: str | None, per_gpu: float | None = 1) -> str:
        sweep = ctx.jobs.start_sweep(load_grid(name), workers=int(per_gpu if per_gpu is not None else 1))
        sweep.source = name  # which grid file the page shows plots of
        at_once = f"{sweep.state.slots} at a time, one process each" if sweep.state.slots > 1 else "one at a time"
        gr.Info(f"Grid {sweep.grid.name}: {sweep.state.total} runs, {at_once}")
        return "starting ..."

    start.click(start_grid, [grid, workers], progress, api_name="grid_start")

    @guard
    def stop_grid() -> None:
        gr.Info(ctx.jobs.stop_sweep())

    stop.click(stop_grid, None, None, api_name="grid_stop")

    def watch(name: str | None, drawn: str) -> tuple:
        sweep = ctx.jobs.sweep()
        if sweep is None:
            return (gr.skip(),) * (len(plots_out) + 3)
        s = sweep.state
        finished = s.done + s.skipped + s.failed
        eta = f" · ETA {s.eta / 60:.0f} min" if s.eta is not None and not s.finished else ""
        at_once = f" · {s.slots} at a time" if s.slots > 1 else ""
        line = (f"**{sweep.grid.name}** · {'finished' if s.finished else f'run {min(finished + 1, s.total)}/{s.total}'}"
                f" · {s.done} trained, {s.skipped} done before, {s.failed} failed{at_once}{eta}")  # fmt: skip
        run, view, live_id = sweep.current_run, None, None
        if run is not None:
            live_id = run.id
            view = ctx.jobs.view(run.id) if run.id else None
            step = f" · step {view.step}/{view.max_steps}" if view and view.max_steps else ""
            line += f"  \ncurrent: {s.current.key if s.current else ''} (`{run.id or 'loading'}`){step}"
        elif running := list(s.running.values()):  # runs in their own processes: name them, follow the newest
            line += "  \ntraining: " + "; ".join(p.key for p in running[:4])
            hashes = {p.config.config_hash() for p in running}
            live_id = next((r.id for r in ctx.registry.list(status="running") if r.config_hash in hashes), None)
            view = ctx.jobs.view(live_id) if live_id else None
        curves = gr.update(visible=False)
        if view is not None and not s.finished:  # the current run's curves, as the Train tab draws them
            from studio import plots

            evals = [(e["step"], e["loss"]) for e in view.evals if "loss" in e]
            figure = plots.loss_curves(view.train_loss, evals)
            figure.update_layout(title_text=f"Current run {live_id}: loss")
            curves = gr.update(value=figure, visible=True)
        # Redraw the study only when a run of it ended (aggregating and redrawing every tick costs both sides).
        signature = f"{name}/{s.done}/{s.skipped}/{s.failed}/{s.finished}"
        if getattr(sweep, "source", None) != name or signature == drawn:
            return (line, curves) + (gr.skip(),) * (len(plots_out) + 1)
        return (line, curves, *study_figures(sweep.grid), signature)

    def study_figures(g: Any) -> tuple:
        from studio import plots, study_plots
        from studio.sweep import aggregate, grid_runs

        rows = aggregate(g, ctx.registry)
        axes = list(g.axes)
        figures = study_plots.study_figures(axes, rows, grid_runs(g, ctx.registry), ctx.registry)
        if "heatmap" not in figures:  # a grid without label-count and sample-size axes: its ranks, if any
            figures["heatmap"] = figures.get("rank") or plots.empty(
                "the heatmap needs label-count and sample-size axes"
            )
        slots = ("heatmap", "methods", "efficiency", "pareto_memory", "pareto_time", "curves")
        drawn = [figures.get(k) or plots.empty("this grid has no axis to compare") for k in slots]
        labels = [a for a in axes if a != "seed"]
        table_rows = [[*(str(r.get(a, "")) for a in labels), r["n"],
                       None if r["accuracy_mean"] is None else round(r["accuracy_mean"], 4),
                       None if r["accuracy_std"] is None else round(r["accuracy_std"], 4),
                       None if r["peak_memory_mb_mean"] is None else round(r["peak_memory_mb_mean"]),
                       None if r["train_seconds_mean"] is None else round(r["train_seconds_mean"], 1)]
                      for r in rows]  # fmt: skip
        headers = [*labels, "n", "accuracy", "± std", "peak MB", "train s"]
        return (*drawn, gr.update(value=table_rows, headers=headers))

    drawn = gr.State("")  # which state of the grid the plots show
    timer.tick(watch, [grid, drawn], [progress, live, *plots_out, drawn], show_progress="hidden",
               api_name="grid_watch")  # fmt: skip

    @guard
    def show_study(name: str | None) -> tuple:
        return study_figures(load_grid(name))

    grid.change(show_study, grid, plots_out, show_progress="hidden")
    grid.change(list_points, grid, [description, points], show_progress="hidden")  # never a stale run list

    @guard
    def write(name: str | None) -> str:
        from studio.report import write_report

        paths = write_report(ctx.registry, tempfile.mkdtemp(prefix="studio-report-"), grid=load_grid(name))
        return str(paths["html"])

    report.click(write, grid, report_file, api_name="grid_report")
    return {"grid": grid, "show": (show_study, grid, plots_out)}
