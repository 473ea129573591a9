"""Train tab: Start / Stop, and a live view of the run that keeps working across reloads.

Start hands the form's config to the app's job slot (`studio.jobs.Jobs`), which trains in its own thread;
this tab never trains. A timer re-reads the run's durable event log every 2 s and redraws only what
changed, so a reloaded page, a second browser, or a page that lost its connection shows the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.results import RunSummary
from studio.runlog import RunView
from studio.ui.feedback import clears, guard, marks, message_slot
from studio.ui.formatting import duration, latest_eval_md, results_md, run_summary
from studio.ui.session import Session, handler

TICK_S = 2.0  # curves at least every 2 s; each redraw costs browser CPU that a CPU training needs
USAGE_SAMPLES = 240  # ~6 minutes of the live monitor at one sample per tick
HARDWARE_EVERY = 4  # ticks between redraws of the hardware plot
NO_CONFUSION = "the test confusion matrix appears when a run ends"
NO_RELIABILITY = (
    "the reliability diagram (confidence vs accuracy, before and after calibration) appears when a run ends"
)


@dataclass
class TrainTab:
    name: gr.Textbox
    gpus: gr.Dropdown
    start: gr.Button
    stop: gr.Button
    status: gr.Markdown
    progress: gr.HTML
    loss_plot: gr.Plot
    metric_plot: gr.Plot
    lr_plot: gr.Plot
    usage_plot: gr.Plot
    log: gr.Textbox
    results: gr.Markdown
    confusion: gr.Plot
    reliability: gr.Plot
    ref: gr.State
    """The job key or run id this page shows."""
    seen: gr.State
    """What the curves show (points, log lines): the curves are redrawn only when it changes."""
    redrawn: gr.State
    """{"at", "cost"} of the last redraw of the curves (plots.redraw_due)."""
    usage: gr.State
    """The hardware monitor's samples, newest last."""
    timer: gr.Timer
    message: gr.Markdown
    """Why Start or Stop could not (empty after a new try), under the buttons."""


def build(session: Session) -> TrainTab:
    from studio.distributed import process_choices

    choices = process_choices()
    with gr.Row():
        name = session.form.field("name", gr.Textbox, label="Run name", info="Part of the run id.", scale=2)
        gpus = gr.Dropdown(
            [(f"{n} GPU{'s' if n > 1 else ''}", n) for n in choices], value=1, label="GPUs for this run", scale=1,
            visible=len(choices) > 1, elem_id="gpus",
            info="more than 1: one run trained data-parallel across them (torchrun DDP), same effective batch",
        )  # fmt: skip
        start = gr.Button("▶ Start training", variant="primary", scale=1, elem_id="start")
        stop = gr.Button("■ Stop", variant="stop", scale=1, elem_id="stop")
    message = message_slot("train-message")
    status = gr.Markdown(
        "No run yet: press **Start training** (the Data and Model tabs set what it trains).", elem_id="run-status"
    )
    progress = gr.HTML(progress_html(RunView()), elem_id="run-progress")
    with gr.Row():
        loss_plot = gr.Plot(label="Loss", show_label=False)
        metric_plot = gr.Plot(label="Validation accuracy and F1", show_label=False)
        lr_plot = gr.Plot(label="Learning rate", show_label=False)
    with gr.Row():
        with gr.Column(scale=2):
            usage_plot = gr.Plot(label="Hardware", show_label=False)
        with gr.Column(scale=3):
            log = gr.Textbox(label="Log", lines=12, max_lines=12, autoscroll=True, interactive=False, elem_id="run-log")
    with gr.Row(elem_id="run-results-row"):
        with gr.Column(scale=5, min_width=420):  # the per-class table needs the room
            results = gr.Markdown(elem_id="run-results")
        confusion = gr.Plot(label="Confusion matrix (test)", show_label=False, scale=4)
        reliability = gr.Plot(label="Reliability diagram (test)", show_label=False, elem_id="reliability", scale=4)
    tab = TrainTab(
        name=name, gpus=gpus, start=start, stop=stop, status=status, progress=progress, loss_plot=loss_plot,
        metric_plot=metric_plot, lr_plot=lr_plot, usage_plot=usage_plot, log=log, results=results,
        confusion=confusion, reliability=reliability, ref=gr.State(None), seen=gr.State(""), redrawn=gr.State(None),
        usage=gr.State([]), timer=gr.Timer(TICK_S), message=message,
    )  # fmt: skip
    _wire(session, tab)
    return tab


def _wire(session: Session, tab: TrainTab) -> None:
    form = session.form
    for trigger in (tab.start.click, tab.stop.click):
        clears(trigger, tab.message)
    marks(tab.message, session)
    tab.start.click(handler(start_run, session, tab), {session.base, tab.gpus, *form.components},
                    [tab.ref, tab.seen, tab.message], api_name="start")  # fmt: skip
    tab.stop.click(handler(stop_run, session, tab), None, tab.message, api_name="stop")
    # The endpoint's results, in this order: (status, progress, loss, metrics, lr, log, results, hardware) to a
    # client, which does not see the states.
    outputs = [tab.ref, tab.seen, tab.status, tab.progress, tab.loss_plot, tab.metric_plot, tab.lr_plot, tab.log,
               tab.results, tab.usage_plot, tab.usage, tab.redrawn]  # fmt: skip
    tab.timer.tick(handler(tick, session, tab), [tab.ref, tab.seen, tab.usage, tab.redrawn], outputs,
                   show_progress="hidden", api_name="tick")  # fmt: skip
    tab.seen.change(handler(result_plots, session), [tab.ref, tab.seen], [tab.confusion, tab.reliability],
                    show_progress="hidden")  # fmt: skip


# ---- handlers --------------------------------------------------------------------------------------------------
@guard
def start_run(session: Session, tab: TrainTab, values: dict[Any, Any]) -> tuple[str, str, str]:
    """Train the form's config in the app's job slot; the page follows the new run."""
    if not str(values[session.form.component("data.source")] or "").strip():
        raise StudioError("choose a dataset first: pick a shipped sample, a Hub id or upload a file in the Data tab")
    config = session.read(values)
    processes = int(values[tab.gpus] or 1)
    job = session.jobs.start(config, gpus=processes)
    where = f" on {processes} GPUs" if processes > 1 else ""
    gr.Info(f"Training {config.model.name} ({config.method.name}) on {config.data.source}{where}")
    return job.key, "", ""  # the run this page follows, nothing drawn yet, no message


@guard
def stop_run(session: Session, tab: TrainTab) -> Any:
    """Ask the run to stop; with nothing training that is said as a notice, not an error."""
    try:
        said = session.jobs.stop()
    except StudioError as e:  # nothing is training: information, there is nothing to fix
        said = str(e)[:1].upper() + str(e)[1:]
    gr.Info(said)
    return gr.skip()


def tick(session: Session, tab: TrainTab, current: str | None, drawn: str, samples: list, last: dict | None) -> dict:
    """What changed since the last tick of the run `current`: the hardware monitor always, progress and status
    while there is a run, the log and curves when a curve point or log line arrived.

    Redrawing a plot costs the browser real CPU (which a CPU training needs) and this process GIL time (which a
    GPU training's Python needs): the hardware plot is redrawn every HARDWARE_EVERY ticks, the curves only when
    something new arrived, and while the run trains only as often as plots.redraw_due allows (at most
    REDRAW_SHARE of the time).
    """
    import time

    from studio import plots

    out = _usage(tab, samples)
    if current is None:
        return out
    try:
        view = session.jobs.view(current)
    except StudioError:  # the run was deleted meanwhile
        return {**out, tab.ref: None, tab.seen: "", tab.status: "That run no longer exists."}
    out |= {tab.status: _status_md(session, current, view), tab.progress: progress_html(view)}
    signature = f"{len(view.train_loss)}/{len(view.evals)}/{len(view.log)}/{view.finished}"
    if signature == drawn:
        return out
    out[tab.log] = "\n".join(view.log[-200:])  # the log's text is cheap: it follows even when the curves wait
    if not plots.redraw_due(last, time.time(), view.finished):
        return out
    t0 = time.perf_counter()
    summary = _summary(session, current, view)
    loss, metrics, lr = plots.live_curves(view)
    # Gradio serialises each figure after this returns, which costs about as much as building it.
    cost = 2 * (time.perf_counter() - t0)
    return out | {
        tab.ref: current,
        tab.seen: signature,
        tab.loss_plot: loss,
        tab.metric_plot: metrics,
        tab.lr_plot: lr,
        tab.results: results_md(summary) if summary else latest_eval_md(view),
        tab.redrawn: {"at": time.time(), "cost": cost},
    }


def _usage(tab: TrainTab, samples: list) -> dict[Any, Any]:
    """The hardware monitor with one more sample; its plot every HARDWARE_EVERY ticks."""
    from studio import plots
    from studio.hardware import monitor_sample, usage

    samples = (samples + [monitor_sample(usage())])[-USAGE_SAMPLES:]
    out: dict[Any, Any] = {tab.usage: samples}
    if len(samples) % HARDWARE_EVERY == 1:
        out[tab.usage_plot] = plots.usage_history([{**s, "time": s["time"] - samples[0]["time"]} for s in samples])
    return out


def result_plots(session: Session, current: str | None, drawn: str) -> tuple[Any, Any]:
    """The test confusion matrix and reliability diagram of the run `current` once it has them; a multi-label run's
    F1 per label in the confusion matrix's place (a text may carry several labels: there is no one predicted class
    to cross with one true class) and its reliability over every (text, label) probability."""
    from studio import plots

    if current is None:
        return plots.empty(NO_CONFUSION), plots.empty(NO_RELIABILITY)
    try:
        summary = _summary(session, current, session.jobs.view(current))
    except StudioError:
        return gr.skip(), gr.skip()
    if summary is not None and summary.test.multi_label:  # no confusion matrix (labels are not exclusive)
        return plots.label_scores(summary.test.per_class), plots.reliability_diagram(summary.calibration, True)
    if summary is None or not summary.test.confusion_matrix:
        return plots.empty(NO_CONFUSION), plots.empty(NO_RELIABILITY)
    confusion = plots.confusion_matrix(summary.test.confusion_matrix, summary.label_names)
    return confusion, plots.reliability_diagram(summary.calibration)


def attach(session: Session) -> tuple[str | None, str]:
    """A (re)loaded page shows the run training now, else the newest run."""
    job = session.jobs.active()
    if job is not None:
        return job.key, ""
    runs = session.registry.list()
    return (runs[0].id if runs else None), ""


# ---- formatting ------------------------------------------------------------------------------------------------
def _summary(session: Session, current: str, view: RunView) -> RunSummary | None:
    if not view.finished:
        return None
    run_id = session.jobs.run_id(current)
    return run_summary(session.registry, run_id) if run_id else None


def _status_md(session: Session, current: str, view: RunView) -> str:
    run_id = session.jobs.run_id(current)
    title = f"**Run** `{run_id}`" if run_id else "**Run** (starting)"
    state = view.status if not view.finished else f"{view.status} — {session.form.words(f'{view.message}')}"
    warning = f"\n\n⚠ **{view.health.flag}**: this run {view.health.reason}" if view.health else ""
    advice = f": {view.health.advice}" if view.health and view.health.advice else ""
    return f"{title} · **{state}**{warning}{advice}"


def progress_html(view: RunView) -> str:
    """The progress bar with step, epoch, elapsed time and ETA."""
    pct = view.fraction * 100
    eta = "—" if view.eta is None or view.finished else duration(view.eta)
    parts = [
        f"step {view.step:,} / {view.max_steps:,}" if view.max_steps else "waiting for the first step",
        f"epoch {view.epoch:.2f}",
        f"elapsed {duration(view.elapsed)}",
        f"ETA {eta}",
    ]
    return (
        f'<div class="studio-progress"><div class="studio-bar"><div style="width:{pct:.1f}%"></div></div>'
        f"<span>{pct:.0f}% · {' · '.join(parts)}</span></div>"
    )
