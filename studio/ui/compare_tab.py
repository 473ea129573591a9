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
        "A **grid** is a base config plus axes (models, methods, ranks, label counts, seeds ...), run one after "
        "another in the background. Runs already completed with the same config are skipped, so a stopped grid "
        "resumes where it was. Grids live in `presets/grids/`; the CLI runs the same: `python -m studio sweep NAME`."
    )
    with gr.Row():
        grids = names(ctx.grids_dir)
        grid = gr.Dropdown(grids, value=(grids or [None])[0], label="Grid", scale=3)
        preview = gr.Button("List its runs", scale=1)
        start = gr.Button("▶ Run the grid", variant="primary", scale=1, elem_id="grid-start")
        stop = gr.Button("■ Stop the grid", variant="stop", scale=1)
    description = gr.Markdown()
    points = gr.Dataframe(headers=POINT_COLUMNS, interactive=False, max_height=300, label="Runs of the grid")
    progress = gr.Markdown(elem_id="grid-progress")
    with gr.Row():
        heatmap = gr.Plot(label="Heatmap", show_label=False)
        methods = gr.Plot(label="Methods", show_label=False)
    with gr.Row():
        pareto = gr.Plot(label="Pareto", show_label=False)
        with gr.Column():
            table = gr.Dataframe(interactive=False, max_height=320, label="Aggregated over seeds")
            report = gr.Button("Write the report (HTML + Markdown + CSV)")
            report_file = gr.File(label="report.html", interactive=False)
    timer = gr.Timer(3.0)

    def load_grid(name: str | None) -> Any:
        from studio.sweep import Grid

        if not name:
            raise StudioError("pick a grid first")
        return Grid.from_yaml(ctx.grids_dir / f"{name}.yaml")

    @guard
    def list_points(name: str | None) -> tuple:
        from studio.memory import estimate

        g = load_grid(name)
        completed = {r.config_hash for r in ctx.registry.list(status="completed")}
        rows = []
        for p in g.points():
            balance = p.config.data.balance
            try:
                e = estimate(p.config, num_labels=balance.num_labels if balance else 2)
                memory, fits = f"{e.total_mb / 1024:.2f} GB", "yes" if e.fits else "no"
            except StudioError as err:
                memory, fits = str(err)[:80], "?"
            rows.append([p.index + 1, p.key, memory, fits, "yes" if p.config.config_hash() in completed else ""])
        return f"**{g.name}**: {g.description} — {len(rows)} runs", rows

    preview.click(list_points, grid, [description, points], api_name="grid_points")

    @guard
    def start_grid(name: str | None) -> str:
        sweep = ctx.jobs.start_sweep(load_grid(name))
        sweep.source = name  # which grid file the page shows plots of
        gr.Info(f"Grid {sweep.grid.name}: {sweep.state.total} runs, one at a time")
        return "starting ..."

    start.click(start_grid, grid, progress, api_name="grid_start")

    @guard
    def stop_grid() -> None:
        gr.Info(ctx.jobs.stop_sweep())

    stop.click(stop_grid, None, None, api_name="grid_stop")

    def watch(name: str | None, drawn: str) -> tuple:
        sweep = ctx.jobs.sweep()
        if sweep is None:
            return (gr.skip(),) * 6
        s = sweep.state
        finished = s.done + s.skipped + s.failed
        eta = f" · ETA {s.eta / 60:.0f} min" if s.eta is not None and not s.finished else ""
        line = (f"**{sweep.grid.name}** · {'finished' if s.finished else f'run {min(finished + 1, s.total)}/{s.total}'}"
                f" · {s.done} trained, {s.skipped} done before, {s.failed} failed{eta}")  # fmt: skip
        run = sweep.current_run
        if run is not None:
            view = ctx.jobs.view(run.id) if run.id else None
            step = f" · step {view.step}/{view.max_steps}" if view and view.max_steps else ""
            line += f"  \ncurrent: {s.current.key if s.current else ''} (`{run.id or 'loading'}`){step}"
        # Redraw the study only when a run of it ended (aggregating and redrawing every tick costs both sides).
        signature = f"{name}/{s.done}/{s.skipped}/{s.failed}/{s.finished}"
        if getattr(sweep, "source", None) != name or signature == drawn:
            return (line,) + (gr.skip(),) * 5
        return (line, *study_figures(sweep.grid), signature)

    def study_figures(g: Any) -> tuple:
        from studio import plots, study_plots
        from studio.sweep import aggregate

        rows = aggregate(g, ctx.registry)
        axes = list(g.axes)
        figures = study_plots.grid_figures(axes, rows)
        heat = (
            figures.get("heatmap")
            or figures.get("rank")
            or plots.empty("the heatmap needs label-count and sample-size axes")
        )
        heat_axes = {*study_plots.HEATMAP_AXES, "seed"}
        group = "method" if "method" in axes else next((a for a in axes if a not in heat_axes), None)
        by = "model.name" if "model.name" in axes and group != "model.name" else None
        compare = study_plots.method_comparison(rows, group, by) if group else plots.empty("no method axis")
        hashes = {p.config.config_hash() for p in g.points()}
        runs = [r for r in ctx.registry.list(status="completed") if r.config_hash in hashes]
        front = study_plots.runs_pareto(runs)
        labels = [a for a in axes if a != "seed"]
        table_rows = [[*(str(r.get(a, "")) for a in labels), r["n"],
                       None if r["accuracy_mean"] is None else round(r["accuracy_mean"], 4),
                       None if r["accuracy_std"] is None else round(r["accuracy_std"], 4),
                       None if r["peak_memory_mb_mean"] is None else round(r["peak_memory_mb_mean"])]
                      for r in rows]  # fmt: skip
        frame = {"headers": [*labels, "n", "accuracy", "± std", "peak MB"], "data": table_rows}
        return heat, compare, front, gr.update(value=frame["data"], headers=frame["headers"])

    drawn = gr.State("")  # which state of the grid the plots show
    timer.tick(watch, [grid, drawn], [progress, heatmap, methods, pareto, table, drawn], show_progress="hidden",
               api_name="grid_watch")  # fmt: skip

    @guard
    def show_study(name: str | None) -> tuple:
        return study_figures(load_grid(name))

    grid.change(show_study, grid, [heatmap, methods, pareto, table], show_progress="hidden")

    @guard
    def write(name: str | None) -> str:
        from studio.report import write_report

        paths = write_report(ctx.registry, tempfile.mkdtemp(prefix="studio-report-"), grid=load_grid(name))
        return str(paths["html"])

    report.click(write, grid, report_file, api_name="grid_report")
    return {"grid": grid, "show": (show_study, grid, [heatmap, methods, pareto, table])}
