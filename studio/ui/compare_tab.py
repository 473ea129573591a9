"""Compare tab: run a grid (a study) from a preset, watch it, and see its heatmap, methods and Pareto plots."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.presets import names
from studio.ui.feedback import guard, said_in
from studio.ui.formatting import gigabytes, rounded
from studio.ui.session import Session, handler

POINT_COLUMNS = ["#", "run", "memory estimate", "fits", "done before"]
STUDY_PLOTS = ("heatmap", "methods", "efficiency", "pareto_memory", "pareto_time", "curves")
"""The study's figures (`study_plots.study_figures` keys), in the order of `CompareTab.study`."""


@dataclass
class CompareTab:
    grid: gr.Dropdown
    preview: gr.Button
    workers: gr.Number
    start: gr.Button
    stop: gr.Button
    description: gr.Markdown
    points: gr.Dataframe
    progress: gr.Markdown
    live: gr.Plot
    """The curves of the grid's run training now."""
    figures: list[gr.Plot]
    """One plot per STUDY_PLOTS entry."""
    table: gr.Dataframe
    """The study aggregated over seeds."""
    report: gr.Button
    report_file: gr.File
    drawn: gr.State
    """Which state of the grid the study's plots show: they are redrawn only when a run of it ended."""
    timer: gr.Timer

    @property
    def study(self) -> list[Any]:
        """What shows the study: its plots and its aggregated table."""
        return [*self.figures, self.table]


def build(session: Session) -> CompareTab:
    gr.Markdown(
        "A **grid** is a base config plus axes (models, methods, ranks, label counts, seeds ...), run in the "
        "background: one run at a time, one per GPU on a machine with several, or more per GPU when you ask. "
        "Runs already completed with the same config are skipped, so a stopped grid resumes where it was. Grids "
        "live in `presets/grids/`; the CLI runs the same: `python -m studio sweep NAME`."
    )
    with gr.Row():
        grids = names(session.grids_dir)
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
    timer = gr.Timer(3.0)
    tab = CompareTab(grid, preview, workers, start, stop, description, points, progress, live,
                     [heatmap, methods, efficiency, pareto, pareto_time, curves], table, report, report_file,
                     gr.State(""), timer)  # fmt: skip
    _wire(session, tab)
    return tab


def _wire(session: Session, tab: CompareTab) -> None:
    listing = [tab.description, tab.points]
    # A failure is said in the grid's description line (a toast too), with no "Error" badge over the pickers
    said = tab.description
    tab.preview.click(**said_in(said, handler(list_points, session), listing), inputs=tab.grid, api_name="grid_points")
    tab.start.click(**said_in(said, handler(start_grid, session), tab.progress), inputs=[tab.grid, tab.workers],
                    api_name="grid_start")  # fmt: skip
    tab.stop.click(handler(stop_grid, session), None, None, api_name="grid_stop")
    tab.timer.tick(handler(watch, session, tab), [tab.grid, tab.drawn], [tab.progress, tab.live, *tab.study, tab.drawn],
                   show_progress="hidden", api_name="grid_watch")  # fmt: skip
    tab.grid.change(handler(show_study, session, tab), tab.grid, tab.study, show_progress="hidden")
    tab.grid.change(**said_in(said, handler(list_points, session), listing), inputs=tab.grid,
                    show_progress="hidden")  # never a stale list  # fmt: skip
    tab.report.click(**said_in(said, handler(write, session), tab.report_file), inputs=tab.grid,
                     api_name="grid_report")  # fmt: skip


# ---- handlers --------------------------------------------------------------------------------------------------
def load_grid(session: Session, name: str | None) -> Any:
    """The grid `name` of the app's grids folder (`studio.sweep.Grid`)."""
    from studio.sweep import Grid

    if not name:
        raise StudioError("pick a grid first")
    return Grid.from_yaml(session.grids_dir / f"{name}.yaml")


@guard
def list_points(session: Session, name: str | None) -> tuple[str, list[list]]:
    """(the grid's name and size, one row per run: its memory estimate, whether it fits, whether it ran)."""
    from studio.speed_plan import planned_estimate

    g = load_grid(session, name)
    completed = {r.config_hash for r in session.registry.list(status="completed")}
    rows = []
    for p in g.points():
        balance = p.config.data.balance
        try:
            e, _ = planned_estimate(p.config, balance.num_labels if balance else 2)
            memory, fits = gigabytes(e.total_mb), "yes" if e.fits else "no"
        except StudioError as err:
            memory, fits = str(err)[:80], "?"
        rows.append([p.index + 1, p.key, memory, fits, "yes" if p.config.config_hash() in completed else ""])
    return f"**{g.name}**: {g.description} — {len(rows)} runs", rows


@guard
def start_grid(session: Session, name: str | None, per_gpu: float | None = 1) -> str:
    """Run the grid in the background; it holds the app's training slot until it ends."""
    sweep = session.jobs.start_sweep(load_grid(session, name), workers=int(per_gpu if per_gpu is not None else 1))
    session.started_grid = (sweep, name)
    at_once = f"{sweep.state.slots} at a time, one process each" if sweep.state.slots > 1 else "one at a time"
    gr.Info(f"Grid {sweep.grid.name}: {sweep.state.total} runs, {at_once}")
    return "starting ..."


@guard
def stop_grid(session: Session) -> None:
    """Ask the grid to stop; with no grid running that is said as a notice, not an error."""
    try:
        gr.Info(session.jobs.stop_sweep())
    except StudioError as e:
        gr.Info(str(e)[:1].upper() + str(e)[1:])


def watch(session: Session, tab: CompareTab, name: str | None, drawn: str) -> Any:
    """The running grid's progress line and its current run's curves; the study redrawn only when a run of it
    ended (aggregating and redrawing every tick costs both sides), and only while the page shows that grid."""
    sweep = session.jobs.sweep()
    if sweep is None:
        return gr.skip()
    s = sweep.state
    current, view, live_id = _current(session, sweep)
    live = _live_curves(view, live_id) if view is not None and not s.finished else gr.update(visible=False)
    out = {tab.progress: _progress_line(sweep) + current, tab.live: live}
    signature = f"{name}/{s.done}/{s.skipped}/{s.failed}/{s.finished}"
    if session.grid_of(sweep) != name or signature == drawn:
        return out
    return {**out, **study_figures(session, tab, sweep.grid), tab.drawn: signature}


def _progress_line(sweep: Any) -> str:
    s = sweep.state
    finished = s.done + s.skipped + s.failed
    eta = f" · ETA {s.eta / 60:.0f} min" if s.eta is not None and not s.finished else ""
    at_once = f" · {s.slots} at a time" if s.slots > 1 else ""
    where = "finished" if s.finished else f"run {min(finished + 1, s.total)}/{s.total}"
    return (
        f"**{sweep.grid.name}** · {where} · {s.done} trained, {s.skipped} done before, {s.failed} failed{at_once}{eta}"
    )


def _current(session: Session, sweep: Any) -> tuple[str, Any, str | None]:
    """(a line naming the grid's run(s) training now, the view of the run whose curves show, its id)."""
    s, run = sweep.state, sweep.current_run
    if run is not None:
        view = session.jobs.view(run.id) if run.id else None
        step = f" · step {view.step}/{view.max_steps}" if view and view.max_steps else ""
        return f"  \ncurrent: {s.current.key if s.current else ''} (`{run.id or 'loading'}`){step}", view, run.id
    running = list(s.running.values())
    if not running:
        return "", None, None
    # Runs in their own processes: name them, follow the newest.
    hashes = {p.config.config_hash() for p in running}
    live_id = next((r.id for r in session.registry.list(status="running") if r.config_hash in hashes), None)
    view = session.jobs.view(live_id) if live_id else None
    return "  \ntraining: " + "; ".join(p.key for p in running[:4]), view, live_id


def _live_curves(view: Any, live_id: str | None) -> dict[str, Any]:
    """The loss curves of the grid's current run, as the Train tab draws them."""
    from studio import plots

    evals = [(e["step"], e["loss"]) for e in view.evals if "loss" in e]
    figure = plots.loss_curves(view.train_loss, evals)
    figure.update_layout(title_text=f"Current run {live_id}: loss")
    return gr.update(value=figure, visible=True)


def study_figures(session: Session, tab: CompareTab, g: Any) -> dict[Any, Any]:
    """The study of grid `g` from the registry: one figure per STUDY_PLOTS entry and the aggregated table."""
    from studio import plots, study_plots
    from studio.sweep import aggregate, grid_runs

    rows = aggregate(g, session.registry)
    axes = list(g.axes)
    runs = grid_runs(g, session.registry)
    figures = study_plots.study_figures(axes, rows, runs, session.registry)
    if "heatmap" not in figures:  # a grid without label-count and sample-size axes: its ranks, if any
        figures["heatmap"] = figures.get("rank") or plots.empty("the heatmap needs label-count and sample-size axes")
    out = {
        plot: figures.get(key) or plots.empty("this grid has no axis to compare")
        for plot, key in zip(tab.figures, STUDY_PLOTS, strict=True)
    }
    # scored as the figures are: accuracy, or macro F1 for a study with multi-label runs
    metric = study_plots.headline_metric(session.registry, [r.id for r in runs])
    labels = [a for a in axes if a != "seed"]
    table_rows = [[*(str(r.get(a, "")) for a in labels), r["n"], r["note"], rounded(r[f"{metric}_mean"], 4),
                   rounded(r[f"{metric}_std"], 4), _whole(r["peak_memory_mb_mean"]),
                   rounded(r["train_seconds_mean"], 1)] for r in rows]  # fmt: skip
    score = study_plots.METRIC_NAMES[metric]
    headers = [*labels, "n", "left out (did not learn)", score, "± std", "peak MB", "train s"]
    return {**out, tab.table: gr.update(value=table_rows, headers=headers)}


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


@guard
def show_study(session: Session, tab: CompareTab, name: str | None) -> dict[Any, Any]:
    """The study of the grid `name` as far as its runs went."""
    return study_figures(session, tab, load_grid(session, name))


@guard
def write(session: Session, name: str | None) -> str:
    """The grid's report (HTML, Markdown, CSV, PNGs) in a temporary folder: the HTML file to download."""
    from studio.report import write_report

    paths = write_report(session.registry, tempfile.mkdtemp(prefix="studio-report-"), grid=load_grid(session, name))
    return str(paths["html"])
