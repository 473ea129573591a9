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
from studio.runlog import ETA_MIN_STEPS, RunView
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
    plan: gr.Markdown
    """What Start will train (`start_plan`): rows, model, method, trainable parameters, peak memory, time."""
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
        stop = gr.Button("■ Stop", variant="stop", scale=1, elem_id="stop", interactive=False)
    plan = gr.Markdown(elem_id="start-plan")
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
        name=name, gpus=gpus, start=start, stop=stop, plan=plan, status=status, progress=progress, loss_plot=loss_plot,
        metric_plot=metric_plot, lr_plot=lr_plot, usage_plot=usage_plot, log=log, results=results,
        confusion=confusion, reliability=reliability, ref=gr.State(None), seen=gr.State(""), redrawn=gr.State(None),
        usage=gr.State([]), timer=gr.Timer(TICK_S), message=message,
    )  # fmt: skip
    _wire(session, tab)
    return tab


def _wire(session: Session, tab: TrainTab) -> None:
    form = session.form
    # Start and Stop follow the slot at once after a click (and on every tick: a run ends, another process trains).
    buttons = dict(fn=handler(controls, session, tab), outputs=[tab.start, tab.stop], show_progress="hidden",
                   api_visibility="private")  # fmt: skip
    for trigger in (tab.start.click, tab.stop.click):
        clears(trigger, tab.message)
    marks(tab.message, session)
    tab.start.click(handler(start_run, session, tab), {session.base, tab.gpus, *form.components},
                    [tab.ref, tab.seen, tab.message], api_name="start").then(**buttons)  # fmt: skip
    tab.stop.click(handler(stop_run, session, tab), None, tab.message, api_name="stop").then(**buttons)
    # The endpoint's results, in this order: (status, progress, loss, metrics, lr, log, results, hardware, start,
    # stop) to a client, which does not see the states.
    outputs = [tab.ref, tab.seen, tab.status, tab.progress, tab.loss_plot, tab.metric_plot, tab.lr_plot, tab.log,
               tab.results, tab.usage_plot, tab.usage, tab.redrawn, tab.start, tab.stop]  # fmt: skip
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

    out = _usage(tab, samples) | controls(session, tab)
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


def controls(session: Session, tab: TrainTab) -> dict[Any, Any]:
    """Start on while the slot is free (off while a run, a grid or a measurement holds it, here or in another
    process); Stop on while this app's run trains (the one it can stop)."""
    return {tab.start: gr.update(interactive=session.jobs.busy() is None),
            tab.stop: gr.update(interactive=session.jobs.active() is not None)}  # fmt: skip


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


def start_plan(session: Session, tab: TrainTab, rows: Any, values: dict[Any, Any]) -> str:
    """What Start will train, beside it: rows per split (`rows`: the Data tab's inspected counts, a state), model,
    method, trainable parameters, estimated peak memory, steps and time (from a finished run of the same model,
    method, max length and batch on this machine, else measured once the run has its first steps). A bad value is
    said here in place, with no pop-up; so is why Start is off."""
    from studio.hardware import detect
    from studio.speed_plan import planned_estimate
    from studio.ui.feedback import import_engine_libraries

    import_engine_libraries()
    busy = session.jobs.busy()
    off = f"**Start is off**: {busy}\n\n" if busy else ""
    counted = dict(values.get(rows) or {})
    try:
        asked = session.read(values)
        e, speed = planned_estimate(asked, session.labels(values), detect(), counted.get("train"))
    except StudioError as err:
        return f"{off}⚠ Start would stop at this: {err}"
    processes = int(values.get(tab.gpus) or 1)
    return off + plan_md(speed.config, counted, e, processes, measured_pace(session.registry, speed.config))


def measured_pace(registry: Any, config: Any) -> tuple[str, float, float] | None:
    """(run id, seconds per step, seconds outside the training loop) of the newest finished run on this machine
    that trained the same model and method at the same max length and batch size; None when there is none."""
    import socket

    from studio.config import RunConfig

    same = (config.model.name, config.method.name, config.data.max_length, config.train.batch_size)
    for record in registry.list(status="completed")[:50]:
        if record.host != socket.gethostname() or not record.train_seconds:
            continue
        try:
            c = RunConfig.from_yaml(registry.run_dir(record.id) / "config.yaml")
            summary = registry.summary(record.id)
        except (StudioError, OSError, ValueError):
            continue
        if (c.model.name, c.method.name, c.data.max_length, c.train.batch_size) != same or summary is None:
            continue
        eff = summary.efficiency
        if eff.steps:
            return record.id, eff.train_seconds / eff.steps, max(eff.total_seconds - eff.train_seconds, 0.0)
    return None


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


def plan_md(
    config: Any, rows: dict[str, int], e: Any, processes: int = 1, pace: tuple[str, float, float] | None = None
) -> str:
    """The summary beside Start: `config` as it would train, `rows` per split (empty: not inspected yet), the
    memory estimate `e`, and the time from `pace` (`measured_pace`)."""
    import math

    from studio.speed_plan import guess_train_rows
    from studio.ui.formatting import gigabytes

    t = config.train
    split_rows = " / ".join(f"{rows[s]:,} {s}" for s in ("train", "validation", "test") if rows.get(s) is not None)
    batch = t.batch_size * t.grad_accum * processes
    train_rows = rows.get("train") or guess_train_rows(config)
    steps = t.max_steps or math.ceil(math.ceil(train_rows / batch) * t.epochs)
    known = bool(t.max_steps or rows.get("train"))  # else a guess from the config: no step count to promise
    share = e.trainable_params / e.total_params if e.total_params else 0.0
    where = "fits" if e.fits else "**does not fit**"
    if pace is None or not known:
        time_line = "time: measured after the first steps"
    else:
        run_id, per_step, outside = pace
        time_line = (f"time ≈ **{duration(steps * per_step + outside)}** ({per_step:.1f} s a step in run `{run_id}` "
                     "on this machine; longer when it is busy)")  # fmt: skip
    return "  \n".join([
        f"**Start trains** `{config.model.name}` · {config.method.name} on `{config.data.source}`",
        f"rows: {split_rows}" if split_rows else "rows: counted by **Inspect data** (Data tab)",
        f"{_count(e.trainable_params)} trainable parameters of {_count(e.total_params)} ({share:.1%}) · "
        f"peak memory ≈ {gigabytes(e.total_mb)} ({where} {e.device.name})",
        (f"{steps:,} steps of {batch}" if known else f"batches of {batch}, steps counted once the data is inspected")
        + f" · {time_line}",
    ])  # fmt: skip


def _count(n: int) -> str:
    """22.7M, or every digit below a million (a tiny model's 1,090 is not 0.0M)."""
    return f"{n / 1e6:,.1f}M" if n >= 1_000_000 else f"{n:,}"


def progress_html(view: RunView) -> str:
    """The progress bar with step, epoch, elapsed time and ETA."""
    pct = view.fraction * 100
    if view.finished or not view.max_steps:
        eta = "—"
    else:  # measured over the recent steps (runlog.measured_eta): nothing is promised before it is measured
        eta = f"measured after {ETA_MIN_STEPS} steps" if view.eta is None else duration(view.eta)
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
