"""Train tab: Start / Stop, and a live view of the run that keeps working across reloads.

Start hands the form's config to the app's job slot (`studio.jobs.Jobs`), which trains in its own thread;
this tab never trains. A timer re-reads the run's durable event log every 2 s and redraws only what
changed, so a reloaded page, a second browser, or a page that lost its connection shows the same run.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.results import RunSummary
from studio.runlog import RunView
from studio.ui.context import Context
from studio.ui.feedback import guard

TICK_S = 2.0  # curves at least every 2 s; each redraw costs browser CPU that a CPU training needs
USAGE_SAMPLES = 240  # ~6 minutes of the live monitor at one sample per tick
HARDWARE_EVERY = 4  # ticks between redraws of the hardware plot


def build(ctx: Context, session: dict[str, Any]) -> dict[str, Any]:
    from studio.distributed import process_choices

    form = ctx.form
    choices = process_choices()
    with gr.Row():
        name = form.field("name", gr.Textbox, label="Run name", info="Part of the run id.", scale=2)
        gpus = gr.Dropdown(
            [(f"{n} GPU{'s' if n > 1 else ''}", n) for n in choices], value=1, label="GPUs for this run", scale=1,
            visible=len(choices) > 1, elem_id="gpus",
            info="more than 1: one run trained data-parallel across them (torchrun DDP), same effective batch",
        )  # fmt: skip
        start = gr.Button("▶ Start training", variant="primary", scale=1, elem_id="start")
        stop = gr.Button("■ Stop", variant="stop", scale=1, elem_id="stop")
    status = gr.Markdown(
        "No run yet: press **Start training** (the Data and Model tabs set what it trains).", elem_id="run-status"
    )
    progress = gr.HTML(_progress_html(RunView()), elem_id="run-progress")
    with gr.Row():
        loss_plot = gr.Plot(label="Loss", show_label=False)
        metric_plot = gr.Plot(label="Validation accuracy and F1", show_label=False)
        lr_plot = gr.Plot(label="Learning rate", show_label=False)
    with gr.Row():
        with gr.Column(scale=2):
            usage_plot = gr.Plot(label="Hardware", show_label=False)
        with gr.Column(scale=3):
            log = gr.Textbox(label="Log", lines=12, max_lines=12, autoscroll=True, interactive=False, elem_id="run-log")
    with gr.Row():
        results = gr.Markdown(elem_id="run-results")
        confusion = gr.Plot(label="Confusion matrix (test)", show_label=False)
    ref = gr.State(None)  # the job key or run id this page shows
    seen = gr.State("")  # what the curves show (points, log lines): skip redrawing when nothing changed
    redrawn = gr.State(None)  # {"at", "cost"} of the last redraw of the curves (plots.redraw_due)
    usage = gr.State([])
    timer = gr.Timer(TICK_S)

    @guard
    def start_run(values: dict) -> tuple:
        if not str(values[session["source"]] or "").strip():
            raise StudioError(
                "choose a dataset first: pick a shipped sample, a Hub id or upload a file in the Data tab"
            )
        config = form.read(values[session["base"]], values)
        processes = int(values[gpus] or 1)
        job = ctx.jobs.start(config, gpus=processes)
        where = f" on {processes} GPUs" if processes > 1 else ""
        gr.Info(f"Training {config.model.name} ({config.method.name}) on {config.data.source}{where}")
        return job.key, ""

    start.click(start_run, {session["base"], gpus, *form.components}, [ref, seen], api_name="start")

    @guard
    def stop_run() -> None:
        gr.Info(ctx.jobs.stop())

    stop.click(stop_run, None, None, api_name="stop")

    def tick(current: str | None, drawn: str, samples: list, last: dict | None) -> tuple:
        import time

        from studio import plots
        from studio.hardware import monitor_sample
        from studio.hardware import usage as hardware_usage

        # Redrawing a plot costs the browser real CPU (which a CPU training needs) and this process GIL time
        # (which a GPU training's Python needs): the hardware plot is redrawn every HARDWARE_EVERY ticks, the
        # curves only when a curve point or log line arrived, and while the run trains only as often as
        # plots.redraw_due allows (at most REDRAW_SHARE of the time).
        samples = (samples + [monitor_sample(hardware_usage())])[-USAGE_SAMPLES:]
        usage_fig = (
            plots.usage_history([{**s, "time": s["time"] - samples[0]["time"]} for s in samples])
            if len(samples) % HARDWARE_EVERY == 1
            else gr.skip()
        )
        if current is None:
            return (gr.skip(),) * 9 + (usage_fig, samples, gr.skip())
        try:
            view = ctx.jobs.view(current)
        except StudioError:  # the run was deleted meanwhile
            return (None, "", "That run no longer exists.") + (gr.skip(),) * 6 + (usage_fig, samples, gr.skip())
        status_md, progress_html = _status_md(ctx, current, view), _progress_html(view)
        signature = f"{len(view.train_loss)}/{len(view.evals)}/{len(view.log)}/{view.finished}"
        if signature == drawn:
            return (gr.skip(), gr.skip(), status_md, progress_html) + (gr.skip(),) * 5 + (usage_fig, samples, gr.skip())
        log_text = "\n".join(view.log[-200:])
        if not plots.redraw_due(last, time.time(), view.finished):  # the log's text is cheap: it follows anyway
            skipped = (gr.skip(),) * 3
            return (gr.skip(), gr.skip(), status_md, progress_html, *skipped, log_text, gr.skip(), usage_fig, samples,
                    gr.skip())  # fmt: skip
        t0 = time.perf_counter()
        summary = _summary(ctx, current, view)
        figures = plots.live_curves(view)
        # Gradio serialises each figure after this returns, which costs about as much as building it.
        cost = 2 * (time.perf_counter() - t0)
        return (
            current,
            signature,
            status_md,
            progress_html,
            *figures,
            log_text,
            results_md(summary) if summary else latest_eval_md(view),
            usage_fig,
            samples,
            {"at": time.time(), "cost": cost},
        )

    outputs = [ref, seen, status, progress, loss_plot, metric_plot, lr_plot, log, results, usage_plot, usage, redrawn]
    timer.tick(tick, [ref, seen, usage, redrawn], outputs, show_progress="hidden", api_name="tick")

    def confusion_for(current: str | None, drawn: str) -> Any:
        from studio import plots

        if current is None:
            return plots.empty("the test confusion matrix appears when a run ends")
        try:
            summary = _summary(ctx, current, ctx.jobs.view(current))
        except StudioError:
            return gr.skip()
        if summary is None or not summary.test.confusion_matrix:
            return plots.empty("the test confusion matrix appears when a run ends")
        return plots.confusion_matrix(summary.test.confusion_matrix, summary.label_names)

    seen.change(confusion_for, [ref, seen], confusion, show_progress="hidden")

    def attach() -> tuple:
        """A (re)loaded page shows the run training now, else the newest run."""
        job = ctx.jobs.active()
        if job is not None:
            return job.key, ""
        runs = ctx.registry.list()
        return (runs[0].id if runs else None), ""

    return {"start": start, "stop": stop, "status": status, "ref": ref, "seen": seen, "attach": attach, "name": name}


def _summary(ctx: Context, current: str, view: RunView) -> RunSummary | None:
    if not view.finished:
        return None
    run_id = ctx.jobs.run_id(current)
    return ctx.registry.summary(run_id) if run_id else None


def _status_md(ctx: Context, current: str, view: RunView) -> str:
    run_id = ctx.jobs.run_id(current)
    title = f"**Run** `{run_id}`" if run_id else "**Run** (starting)"
    state = view.status if not view.finished else f"{view.status} — {view.message}"
    return f"{title} · **{state}**"


def _progress_html(view: RunView) -> str:
    pct = view.fraction * 100
    eta = "—" if view.eta is None or view.finished else _duration(view.eta)
    parts = [
        f"step {view.step:,} / {view.max_steps:,}" if view.max_steps else "waiting for the first step",
        f"epoch {view.epoch:.2f}",
        f"elapsed {_duration(view.elapsed)}",
        f"ETA {eta}",
    ]
    return (
        f'<div class="studio-progress"><div class="studio-bar"><div style="width:{pct:.1f}%"></div></div>'
        f"<span>{pct:.0f}% · {' · '.join(parts)}</span></div>"
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def latest_eval_md(view: RunView) -> str:
    """While training: the latest validation evaluation, with per-class F1."""
    e = view.latest_eval()
    if not e:
        return "Validation metrics appear here at each evaluation."
    lines = [
        f"### Validation at step {e.get('step')}: accuracy {e.get('accuracy', 0):.2%} · macro F1 "
        f"{e.get('f1_macro', 0):.3f}",
        "",
        "| class | F1 |",
        "|---|---|",
    ]
    lines += [f"| {k.removeprefix('f1/')} | {v:.3f} |" for k, v in e.items() if k.startswith("f1/")][:30]
    return "\n".join(lines)


def results_md(summary: RunSummary | None) -> str:
    """Test metrics and efficiency of a finished run (eval.json)."""
    if summary is None:
        return ""
    test, eff = summary.test, summary.efficiency
    lines = [
        f"### Test accuracy {test.accuracy:.2%} · macro F1 {test.f1_macro:.3f} · weighted F1 {test.f1_weighted:.3f}",
        f"{test.n:,} test texts; status **{summary.status or ''}**",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for label, m in list(test.per_class.items())[:30]:
        lines.append(f"| {label} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} | {m.support} |")
    lines += [
        "",
        f"**Efficiency:** {eff.trainable_params:,} trainable of {eff.total_params:,} "
        f"parameters ({eff.trainable_percent:.2f}%) · peak memory {eff.peak_memory_mb or 0:,.0f} MB "
        f"({eff.peak_memory_kind or ''}) · training {eff.train_seconds:,.0f} s for "
        f"{eff.steps} steps ({eff.total_seconds:,.0f} s in all)",
    ]
    spread = summary.distributed
    if spread is not None and spread.processes > 1:
        lines.append(
            f"  \n**{spread.processes} GPUs{' (FSDP)' if spread.fsdp else ''}:** batch "
            f"{spread.per_device_batch} per GPU x accumulation {spread.grad_accum} = effective batch "
            f"{spread.effective_batch}; peak memory is rank 0's"
        )
    memory = summary.memory
    if memory.error_pct is not None and memory.estimate_mb is not None and memory.measured_mb is not None:
        lines.append(
            f"  \n**Memory estimate** {memory.estimate_mb:,.0f} MB vs measured {memory.measured_mb:,.0f} MB "
            f"({memory.error_pct:+.1f}%, {memory.measured_kind})"
        )
    return "\n".join(lines)
