"""Compare tab: run a grid (a study) from a preset, watch it, and see its heatmap, methods and Pareto plots."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.presets import names
from studio.ui.feedback import guard, said_in
from studio.ui.formatting import axis_title, gigabytes, megabytes_column, number, percent, run_name, span
from studio.ui.session import Session, handler

POINT_COLUMNS = ["#", "run", "memory estimate", "fits", "done before"]
STUDY_PLOTS = ("heatmap", "methods", "efficiency", "pareto_memory", "pareto_time", "curves")
"""The study's figures (`study_plots.study_figures` keys), in the order of `CompareTab.study`."""
CPU_GRID = "cpu_quick_methods"
"""The grid a machine without a GPU starts at: two short runs a laptop CPU trains in minutes."""


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
    empty_note: gr.Markdown
    """What to do while the grid has no run: the study's panels stay hidden until it has one."""
    drawn: gr.State
    """Which state of the grid the study's plots show: they are redrawn only when a run of it ended."""
    timer: gr.Timer

    @property
    def study(self) -> list[Any]:
        """What shows the study: its plots, its aggregated table, the report (shown once the grid has runs) and the
        empty state's message (shown until then)."""
        return [*self.figures, self.table, self.report, self.report_file, self.empty_note]


def build(session: Session) -> CompareTab:
    gr.Markdown(
        "A **grid** is a base config plus axes (models, methods, ranks, label counts, seeds ...), run in the "
        "background: one run at a time, one per GPU on a machine with several, or more per GPU when you ask (on a "
        "Ray cluster when the app was started with `STUDIO_RAY_ADDRESS` set: see docs/multi_gpu.md). "
        "Runs already completed with the same config are skipped, so a stopped grid resumes where it was. Grids "
        "live in `presets/grids/`; the CLI runs the same: `python -m studio sweep NAME`."
    )
    with gr.Row():
        grids = names(session.grids_dir)
        grid = gr.Dropdown(grids, value=default_grid(grids), label="Grid", scale=3, elem_id="grid-choice")
        preview = gr.Button("List its runs", scale=1)
        workers = gr.Number(1, label="Runs at a time per GPU", precision=0, minimum=1, maximum=16, scale=1,
                            info="more than 1: each run in its own process; pays off for small models")  # fmt: skip
        start = gr.Button("▶ Run the grid", variant="primary", scale=1, elem_id="grid-start")
        stop = gr.Button("■ Stop the grid", variant="stop", scale=1, interactive=False)
    description = gr.Markdown()
    points = gr.Dataframe(
        headers=POINT_COLUMNS, interactive=False, max_height=300, label="Runs of the grid", visible=False
    )  # shown once listed: no empty table under the empty state's message
    progress = gr.Markdown(elem_id="grid-progress")
    live = gr.Plot(label="Current run", show_label=False, visible=False)
    empty_note = gr.Markdown(elem_id="grid-empty")  # filled when the tab opens (`show_study`)
    hidden = {"show_label": False, "visible": False}  # the study's panels, until the grid has runs
    heatmap = gr.Plot(label="Heatmap", **hidden)
    with gr.Row():
        methods = gr.Plot(label="Methods", **hidden)
        efficiency = gr.Plot(label="Efficiency", **hidden)
    with gr.Row():
        pareto = gr.Plot(label="Pareto: memory", **hidden)
        pareto_time = gr.Plot(label="Pareto: time", **hidden)
    with gr.Row():
        curves = gr.Plot(label="Curves", **hidden)
        with gr.Column():
            table = gr.Dataframe(interactive=False, max_height=320, label="Aggregated over seeds", visible=False)
            report = gr.Button("Write the report (HTML + Markdown + CSV + PNGs)", visible=False)
            report_file = gr.File(label="report.html", interactive=False, visible=False)
    timer = gr.Timer(3.0)
    tab = CompareTab(grid, preview, workers, start, stop, description, points, progress, live,
                     [heatmap, methods, efficiency, pareto, pareto_time, curves], table, report, report_file,
                     empty_note, gr.State(""), timer)  # fmt: skip
    _wire(session, tab)
    return tab


def _wire(session: Session, tab: CompareTab) -> None:
    listing = [tab.description, tab.points]
    shown = {"fn": lambda: gr.update(visible=True), "inputs": None, "outputs": tab.points, "api_visibility": "private",
             "show_progress": "hidden"}  # fmt: skip
    # A failure is said in the grid's description line (a toast too), with no "Error" badge over the pickers;
    # the table shows once listed, by a step of its own: /grid_points gives clients the rows as it always has
    said = tab.description
    tab.preview.click(**said_in(said, handler(list_points, session), listing), inputs=tab.grid,
                      api_name="grid_points").success(**shown)  # fmt: skip
    tab.start.click(**said_in(said, handler(start_grid, session), tab.progress), inputs=[tab.grid, tab.workers],
                    api_name="grid_start")  # fmt: skip
    tab.stop.click(handler(stop_grid, session), None, None, api_name="grid_stop")
    tab.timer.tick(handler(watch, session, tab), [tab.grid, tab.drawn],
                   [tab.progress, tab.live, *tab.study, tab.drawn, tab.start, tab.stop],
                   show_progress="hidden", api_name="grid_watch")  # fmt: skip
    tab.grid.change(handler(show_study, session, tab), tab.grid, tab.study, show_progress="hidden")
    listed = tab.grid.change(**said_in(said, handler(list_points, session), listing), inputs=tab.grid,
                             show_progress="hidden")  # fmt: skip
    listed.success(**shown)  # never a stale list
    tab.report.click(**said_in(said, handler(write, session), tab.report_file), inputs=tab.grid,
                     api_name="grid_report").success(**{**shown, "outputs": tab.report_file})  # fmt: skip


def default_grid(grids: list[str]) -> str | None:
    """The grid the list starts at: on a machine without a GPU the CPU-sized one (when the folder has it), else the
    first."""
    from studio.hardware import detect

    if CPU_GRID in grids and detect().kind == "cpu":
        return CPU_GRID
    return (grids or [None])[0]


# ---- handlers --------------------------------------------------------------------------------------------------
def load_grid(session: Session, name: str | None) -> Any:
    """The grid `name` of the app's grids folder (`studio.sweep.Grid`)."""
    from studio.sweep import Grid

    if not name:
        raise StudioError("pick a grid first")
    return Grid.from_yaml(session.grids_dir / f"{name}.yaml")


@guard
def list_points(session: Session, name: str | None) -> tuple[str, list[list]]:
    """(the grid's name and size, one row per run named by its axis values: its memory estimate, whether it fits,
    whether it ran)."""
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
        rows.append(
            [p.index + 1, run_name(p.labels), memory, fits, "yes" if p.config.config_hash() in completed else ""]
        )
    return f"**{g.name}**: {g.description} — {len(rows)} runs", rows


@guard
def start_grid(session: Session, name: str | None, per_gpu: float | None = 1) -> str:
    """Run the grid in the background; it holds the app's training slot until it ends."""
    sweep = session.jobs.start_sweep(load_grid(session, name), workers=int(per_gpu if per_gpu is not None else 1))
    session.started_grid = (sweep, name)
    at_once = f"{sweep.state.slots} at a time, one process each" if sweep.state.slots > 1 else "one at a time"
    if sweep.ray is not None:
        at_once = f"on the Ray cluster at {sweep.ray.address}"
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
        return buttons(session, tab)
    s = sweep.state
    current, view, live_id = _current(session, sweep)
    live = _live_curves(view, live_id) if view is not None and not s.finished else gr.update(visible=False)
    out = {tab.progress: _progress_line(sweep) + current, tab.live: live, **buttons(session, tab)}
    signature = f"{name}/{s.done}/{s.skipped}/{s.failed}/{s.finished}"
    if session.grid_of(sweep) != name or signature == drawn:
        return out
    return {**out, **study_figures(session, tab, sweep.grid), tab.drawn: signature}


def buttons(session: Session, tab: CompareTab) -> dict[Any, Any]:
    """Run on while the app's training slot is free (no run, grid or measurement holds it); Stop on while this
    app's grid runs (the one it can stop)."""
    sweep = session.jobs.sweep()
    running = sweep is not None and not sweep.state.finished
    return {tab.start: gr.update(interactive=session.jobs.busy() is None), tab.stop: gr.update(interactive=running)}


def _progress_line(sweep: Any) -> str:
    s = sweep.state
    finished = s.done + s.skipped + s.failed
    eta = f" · ETA {s.eta / 60:.0f} min" if s.eta is not None and not s.finished else ""
    at_once = f" · {s.slots} at a time" if s.slots > 1 else ""
    at_once += f" · on Ray at {sweep.ray.address}" if getattr(sweep, "ray", None) is not None else ""
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
        name = run_name(s.current.labels) if s.current else ""
        return f"  \ncurrent: {name} (`{run.id or 'loading'}`){step}", view, run.id
    running = list(s.running.values())
    if not running:
        return "", None, None
    # Runs in their own processes: name them, follow the newest.
    hashes = {p.config.config_hash() for p in running}
    live_id = next((r.id for r in session.registry.list(status="running") if r.config_hash in hashes), None)
    view = session.jobs.view(live_id) if live_id else None
    return "  \ntraining: " + "; ".join(run_name(p.labels) for p in running[:4]), view, live_id


def _live_curves(view: Any, live_id: str | None) -> dict[str, Any]:
    """The loss curves of the grid's current run, as the Train tab draws them."""
    from studio import plots

    evals = [(e["step"], e["loss"]) for e in view.evals if "loss" in e]
    figure = plots.loss_curves(view.train_loss, evals)
    figure.update_layout(title_text=f"Current run {live_id}: loss")
    return gr.update(value=figure, visible=True)


def study_figures(session: Session, tab: CompareTab, g: Any) -> dict[Any, Any]:
    """The study of grid `g` from the registry: one figure per STUDY_PLOTS entry and the aggregated table. Before
    the grid has a run, one message says what to do and the panels stay hidden; a figure the grid's axes do not
    make (no heatmap without label-count and sample-size axes) is hidden rather than shown empty."""
    from studio import study_plots
    from studio.sweep import aggregate, grid_runs

    runs = grid_runs(g, session.registry)
    hidden = gr.update(visible=False)
    if not runs:
        note = gr.update(value=nothing_yet(g), visible=True)
        return {**dict.fromkeys(tab.figures, hidden), tab.table: hidden, tab.report: hidden, tab.report_file: hidden,
                tab.empty_note: note}  # fmt: skip
    rows = aggregate(g, session.registry)
    axes = list(g.axes)
    figures = study_plots.study_figures(axes, rows, runs, session.registry)
    figures.setdefault("heatmap", figures.get("rank"))  # a grid without label-count and sample-size axes: its ranks
    out = {
        plot: gr.update(value=figures[key], visible=True) if figures.get(key) is not None else hidden
        for plot, key in zip(tab.figures, STUDY_PLOTS, strict=True)
    }
    # scored as the figures are: accuracy, or macro F1 for a study with multi-label runs
    metric = study_plots.headline_metric(session.registry, [r.id for r in runs])
    labels = [a for a in axes if a != "seed"]
    score = percent if metric == "accuracy" else number
    memory = megabytes_column([r["peak_memory_mb_mean"] for r in rows])
    table_rows = [[*(str(r.get(a, "")) for a in labels), r["n"], r["note"], score(r[f"{metric}_mean"]),
                   _spread(r[f"{metric}_std"], metric), mb, span(r["train_seconds_mean"])]
                  for r, mb in zip(rows, memory, strict=True)]  # fmt: skip
    headers = [*map(axis_title, labels), "n", "left out (did not learn)", study_plots.METRIC_NAMES[metric], "± std",
               "peak memory", "train time"]  # fmt: skip
    shown = gr.update(visible=True)
    return {**out, tab.table: gr.update(value=table_rows, headers=headers, visible=True), tab.report: shown,
            tab.report_file: hidden, tab.empty_note: hidden}  # the file box shows once written  # fmt: skip


def _spread(std: float | None, metric: str) -> str:
    """The spread over seeds as the mean is said: percentage points for accuracy, F1 to 3 decimals; "" for one seed."""
    if std is None:
        return ""
    return f"{std * 100:.1f} pt" if metric == "accuracy" else number(std)


def nothing_yet(g: Any) -> str:
    """The Compare tab's one message while grid `g` has no run: what to press, and a grid too large for this machine."""
    from studio.hardware import detect

    n = len(g.points())
    said = (f"**Nothing to compare yet.** Press **▶ Run the grid** to train the {n} runs of **{g.name}**, or **List "
            "its runs** to see them and their memory first. The heatmap, the method comparison, the Pareto fronts "
            "and the table appear here as its runs finish.")  # fmt: skip
    if n > 8 and detect().kind == "cpu" and g.name != CPU_GRID.replace("_", "-"):
        said += (f"  \nThis grid is sized for GPUs: on this machine (no GPU) start with **{CPU_GRID}** (2 short "
                 "runs).")  # fmt: skip
    return said


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
