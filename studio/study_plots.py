"""Figures of a study (a grid's aggregated rows) and of single runs: accuracy heatmaps, rank sensitivity,
methods compared, efficiency vs full fine-tuning, Pareto fronts, overlaid curves, one run's seed-study set.

Inputs are the rows of `studio.sweep.aggregate` (one per group of seeds: the axis labels, n, and
``<metric>_mean`` / ``<metric>_std``), so the same figures serve the UI, the report and the CLI. Every
function returns `plots.empty(...)` when the rows lack what it draws, never raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studio.plots import COSTS, HEIGHT, empty, method_color

METRIC_NAMES = {"accuracy": "accuracy", "f1_macro": "macro F1"}
"""What a study is scored by, in words: accuracy, or macro F1 when it has multi-label runs (`headline_metric`)."""


def headline_metric(registry: Any, run_ids: Iterable[str]) -> str:
    """The metric a study of these runs is scored by: "f1_macro" when any is multi-label, else "accuracy".

    A multi-label run's accuracy is the share of texts whose whole label set is right, too harsh to set beside
    anything, so such a study is scored by macro F1 (which a single-label run has too)."""
    return "f1_macro" if any(registry.task(i) == "multi_label" for i in dict.fromkeys(run_ids)) else "accuracy"


def _upper(name: str) -> str:
    """The name to open a title: "Macro F1", not str.capitalize's "Macro f1"."""
    return name[:1].upper() + name[1:]


def _values(rows: list[dict], key: str) -> list[Any]:
    return list(dict.fromkeys(r[key] for r in rows if key in r))


def accuracy_heatmap(rows: list[dict], x: str, y: str, panel: str | None = None, metric: str = "accuracy") -> go.Figure:
    """Mean `metric` over the seeds for each (y, x) cell, one panel per value of `panel` (e.g. the model).

    For the GoEmotions grid: x = data.balance.num_samples, y = data.balance.num_labels, panel = model.name.
    A cell whose runs were left out of the mean (flagged as not learning: `sweep.aggregate_runs`) says so.
    """
    rows = [r for r in rows if (r.get(f"{metric}_mean") is not None or r.get("flags")) and x in r and y in r]
    if not rows:
        return empty(f"No finished runs with {metric} for a {y} x {x} heatmap yet")
    panels = _values(rows, panel) if panel else [None]
    xs, ys = sorted(_values(rows, x)), sorted(_values(rows, y))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[str(p) for p in panels] if panel else None,
                        shared_yaxes=True, horizontal_spacing=0.04)  # fmt: skip
    for col, value in enumerate(panels, start=1):
        cells = {(r[y], r[x]): r for r in rows if panel is None or r[panel] == value}
        z = [[cells[(yy, xx)][f"{metric}_mean"] if (yy, xx) in cells else None for xx in xs] for yy in ys]
        text = [[_cell_text(cells.get((yy, xx)), metric) for xx in xs] for yy in ys]
        fig.add_trace(go.Heatmap(z=z, x=[str(v) for v in xs], y=[str(v) for v in ys], text=text,
                                 texttemplate="%{text}", zmin=0, zmax=1, colorscale="Blues",
                                 showscale=col == len(panels), hovertemplate=f"{y} %{{y}}<br>{x} %{{x}}<br>"
                                 f"{METRIC_NAMES.get(metric, metric)} %{{z:.1%}}<extra></extra>"), row=1,
                                 col=col)  # fmt: skip
        fig.update_xaxes(title_text=x.split(".")[-1], type="category", row=1, col=col)
    fig.update_yaxes(title_text=y.split(".")[-1], type="category", row=1, col=1)
    fig.update_layout(template="plotly_white", height=HEIGHT + 40, margin=dict(l=60, r=20, t=60, b=50),
                      title=dict(text=f"{METRIC_NAMES.get(metric, metric)} (mean over seeds)", x=0.01))  # fmt: skip
    return fig


def _cell_text(row: dict | None, metric: str) -> str:
    if row is None:
        return ""
    mean, std, n = row[f"{metric}_mean"], row.get(f"{metric}_std"), row.get("n", 1)
    text = "" if mean is None else f"{mean:.1%}" + (f"<br>±{std:.1%}" if n and n > 1 and std is not None else "")
    note = str(row.get("note") or "").replace("; ", "<br>")
    return f"{text}<br>{note}" if text and note else text or note


def rank_sensitivity(rows: list[dict], rank: str = "method.r", metric: str = "accuracy") -> go.Figure:
    """`metric` (mean ± std over seeds) and trainable parameters against the LoRA rank."""
    rows = sorted((r for r in rows if r.get(f"{metric}_mean") is not None and rank in r), key=lambda r: r[rank])
    if not rows:
        return empty("No finished runs over LoRA ranks yet")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ranks = [r[rank] for r in rows]
    name = METRIC_NAMES.get(metric, metric)
    fig.add_scatter(x=ranks, y=[r[f"{metric}_mean"] for r in rows], name=name, mode="lines+markers",
                    error_y=dict(type="data", array=[r.get(f"{metric}_std") or 0 for r in rows]))  # fmt: skip
    params = [r.get("trainable_params_mean") for r in rows]
    if any(p is not None for p in params):
        fig.add_scatter(x=ranks, y=params, name="trainable parameters", mode="lines+markers",
                        line=dict(dash="dot"), secondary_y=True)  # fmt: skip
    fig.update_xaxes(type="log", title_text="LoRA rank r")
    fig.update_yaxes(title_text=name, tickformat=".1%", secondary_y=False)
    fig.update_yaxes(title_text="trainable parameters", secondary_y=True, showgrid=False)
    fig.update_layout(template="plotly_white", height=HEIGHT, title=dict(text="Rank sensitivity", x=0.01))
    return fig


def method_comparison(rows: list[dict], group: str = "method", by: str | None = "model.name",
                      metric: str = "accuracy") -> go.Figure:  # fmt: skip
    """`metric` (mean ± std over seeds) per method variant (e.g. attention vs attention+FFN), grouped by
    model. Where a variant has several rows (other axes, e.g. label counts and sizes), its bar is the mean
    over those cells and its error bar their mean seed std."""
    rows = [r for r in rows if r.get(f"{metric}_mean") is not None and group in r]
    if not rows:
        return empty("No finished runs to compare methods yet")
    fig = go.Figure()
    cells_per_bar = 1
    for value in _values(rows, by) if by else [None]:
        part = [r for r in rows if by is None or r.get(by) == value]
        names = _values(part, group)
        cells = {n: [r for r in part if r[group] == n] for n in names}
        cells_per_bar = max(cells_per_bar, *(len(c) for c in cells.values()))
        means = [_mean(c, f"{metric}_mean") for c in cells.values()]
        stds = [sum(r.get(f"{metric}_std") or 0 for r in c) / len(c) for c in cells.values()]
        hover = "%{x}: %{y:.2%} (%{customdata} cells)<extra>" + str(value or "") + "</extra>"
        # one model: each method's bar in its colour (as on the other charts); several: a colour per model
        colors = None if by else [method_color(str(n)) for n in names]
        fig.add_bar(x=[str(n) for n in names], y=means, name=str(value or ""), hovertemplate=hover,
                    error_y=dict(type="data", array=stds), customdata=[len(c) for c in cells.values()],
                    marker_color=colors)  # fmt: skip
    low = min(min(t.y) for t in fig.data)
    name = METRIC_NAMES.get(metric, metric)
    fig.update_yaxes(tickformat=".0%", range=[max(0.0, low - 0.1), 1.0], title_text=name)
    title = f"{_upper(name)} by method (mean ± std over seeds)"
    if cells_per_bar > 1:
        title = f"{_upper(name)} by {group.split('.')[-1]}, mean over the {cells_per_bar} cells of the other axes"
    fig.update_layout(template="plotly_white", height=HEIGHT, barmode="group", title=dict(text=title, x=0.01))
    return fig


HEATMAP_AXES = ("data.balance.num_samples", "data.balance.num_labels")


def compared_axis(axes: list[str]) -> str | None:
    """The axis a study compares (bars, efficiency, curves): `method`, else the first that is not a heatmap
    axis, the seed or the model (e.g. a named `setup` axis that sets model and method together)."""
    if "method" in axes:
        return "method"
    return next((a for a in axes if a not in {*HEATMAP_AXES, "seed", "model.name"}), None)


def panel_axis(axes: list[str]) -> str | None:
    """One heatmap panel per value of this axis: the model, else the compared axis."""
    return "model.name" if "model.name" in axes else compared_axis(axes)


def efficiency(rows: list[dict], group: str, metric: str = "accuracy") -> go.Figure:
    """Trainable parameters, peak memory, training time and `metric` of each `group` value as a share of
    full fine-tuning of the same model (means over every other axis), on a log scale: 1 = as full FT.

    Rows need `config` (the group's RunConfig, from `sweep.aggregate`) for the model and the method.
    """
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get(f"{metric}_mean") is not None and group in r:
            by.setdefault((r["config"].model.name, str(r[group])), []).append(r)
    full = {model: members for (model, _), members in by.items()
            if all(m["config"].method.spec.trains_every_weight for m in members)}  # fmt: skip
    metrics = {"trainable_params": "trainable params", "peak_memory_mb": "peak memory",
               "train_seconds": "training time", metric: METRIC_NAMES.get(metric, metric)}  # fmt: skip
    fig = go.Figure()
    for (model, value), members in by.items():
        reference = full.get(model)
        if reference is None or reference is members:
            continue
        ratios = []
        for key in metrics:
            mine, theirs = _mean(members, f"{key}_mean"), _mean(reference, f"{key}_mean")
            ratios.append(mine / theirs if mine is not None and theirs else None)
        fig.add_bar(x=list(metrics.values()), y=ratios, name=value, text=[_ratio(v) for v in ratios],
                    textposition="outside", marker_color=method_color(value),
                    hovertemplate="%{x}: %{y:.3g}x full fine-tuning<extra>" + value + "</extra>")  # fmt: skip
    if not fig.data:
        return empty("Efficiency needs full fine-tuning and another method of the same model")
    fig.add_hline(y=1, line=dict(color="#37474F", dash="dot", width=1))
    shown = [v for trace in fig.data for v in trace.y if v] + [1.0]
    # decades only (plotly's log axis labels 2 and 5 between them too), and room above the tallest bar's label
    span = [math.log10(min(shown)) - 0.35, math.log10(max(shown)) + 0.35]
    fig.update_yaxes(type="log", title_text="share of full fine-tuning (log)", range=span, dtick=1, tickformat="~g")
    fig.update_traces(cliponaxis=False)
    fig.update_layout(template="plotly_white", height=HEIGHT, barmode="group", showlegend=True,  # one method too
                      title=dict(text="Efficiency vs full fine-tuning of the same model", x=0.01))  # fmt: skip
    return fig


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1%}" if value < 0.1 else f"{value:.2f}x"


def curves(registry: Any, run_ids: dict[str, str], metric: str = "accuracy", by_method: bool = False) -> go.Figure:
    """Validation `metric` of runs overlaid, by epoch; `run_ids` maps a legend name to a run id. `by_method`:
    the names are compared values (methods, setups), each drawn in its colour on every chart."""
    from studio.plots import runs_overlay
    from studio.runlog import LogFollower

    series = {}
    for name, run_id in run_ids.items():
        view = LogFollower(registry.run_dir(run_id) / "metrics.jsonl").refresh()
        series[name] = [(e.get("epoch", e["step"]), e[metric]) for e in view.evals if metric in e]
    colors = {name: method_color(name) for name in series} if by_method else None
    return runs_overlay(series, f"validation {metric}", x_label="epoch", colors=colors)


TITLES = {
    "heatmap": "Accuracy by labels x samples",
    "rank": "Rank sensitivity",
    "methods": "Methods compared",
    "efficiency": "Efficiency vs full fine-tuning",
    "pareto_memory": "Accuracy vs peak memory",
    "pareto_time": "Accuracy vs training time",
    "curves": "Validation accuracy by epoch",
}
"""The figures of a study, by key, with their headings (the report's, the Compare tab's slots)."""


def title(key: str, metric: str = "accuracy") -> str:
    """The heading of figure `key` of a study scored by `metric` ("Macro F1 vs peak memory"); other keys as
    they are (a runs report's own figures)."""
    text = TITLES.get(key, key)
    if metric == "accuracy" or key not in TITLES:
        return text
    name = METRIC_NAMES.get(metric, metric)
    return text.replace("Accuracy", _upper(name)).replace("accuracy", name)


def study_figures(axes: list[str], rows: list[dict], runs: list[Any], registry: Any) -> dict[str, go.Figure]:
    """Every figure of a grid (keys of `TITLES`), in reading order: the heatmap (label-count and sample-size
    axes, one panel per model or setup), rank sensitivity (more than two ranks), methods compared,
    efficiency vs full FT, the Pareto fronts of accuracy vs peak memory and vs training time (completed
    runs), and the validation curves of each compared value on the hardest cell (its first seed). A study with
    multi-label runs is scored by macro F1 throughout (`headline_metric`)."""
    figures: dict[str, go.Figure] = {}
    group = compared_axis(axes)
    metric = headline_metric(registry, [*(i for r in rows for i in r["run_ids"]), *(r.id for r in runs)])
    if set(HEATMAP_AXES) <= set(axes):
        figures["heatmap"] = accuracy_heatmap(rows, *HEATMAP_AXES, panel_axis(axes), metric=metric)
    if rows and len({r["config"].method.r for r in rows}) > 2:
        figures["rank"] = rank_sensitivity([{**r, "method.r": r["config"].method.r} for r in rows], metric=metric)
    if group:
        by = "model.name" if "model.name" in axes and group != "model.name" else None
        figures["methods"] = method_comparison(rows, group, by, metric)
        figures["efficiency"] = efficiency(rows, group, metric)
    completed = [r for r in runs if r.status == "completed"]
    figures["pareto_memory"] = runs_pareto(completed, registry=registry)
    figures["pareto_time"] = runs_pareto(completed, "train_seconds", registry)
    if group:
        figures["curves"] = _hardest_cell_curves(registry, rows, axes, group, metric)
    return figures


def _hardest_cell_curves(registry: Any, rows: list[dict], axes: list[str], group: str, metric: str) -> go.Figure:
    """The validation `metric` by epoch of each `group` value on the hardest cell (the most labels and samples)."""
    hardest = {a: max(r[a] for r in rows) for a in HEATMAP_AXES if a in axes and rows}
    chosen = {str(r[group]): r["run_ids"][0] for r in rows
              if r["run_ids"] and all(r.get(a) == v for a, v in hardest.items())}  # fmt: skip
    if not chosen:
        return empty("No finished runs to draw curves of yet")
    figure = curves(registry, chosen, metric, by_method=True)
    if hardest:
        where = ", ".join(f"{v} {a.split('.')[-1].removeprefix('num_')}" for a, v in hardest.items())
        figure.update_layout(title_text=f"Validation {METRIC_NAMES.get(metric, metric)} by epoch ({where})")
    return figure


def run_figures(registry: Any, run_id: str) -> dict[str, go.Figure]:
    """The seed study's figures of one run: its data (labels per split), training and validation loss,
    validation metrics, and the test confusion matrix (a multi-label run: its F1 per label)."""
    from studio import plots
    from studio.runlog import LogFollower

    view = LogFollower(registry.run_dir(run_id) / "metrics.jsonl").refresh()
    summary = registry.summary(run_id)
    figures = {}
    stats = view.data.get("stats") or {}
    if stats.get("labels"):
        figures["Labels per split"] = plots.label_distribution(stats["labels"], stats.get("task") == "multi_label")
    figures["Loss"] = plots.loss_curves(view.train_loss, [(e["step"], e["loss"]) for e in view.evals if "loss" in e])
    figures["Validation metrics"] = plots.metric_curves(view.evals)
    if summary is not None and summary.test.confusion_matrix:
        figures["Test confusion matrix"] = plots.confusion_matrix(summary.test.confusion_matrix, summary.label_names)
    elif summary is not None and summary.test.multi_label:
        figures["Test F1 per label"] = plots.label_scores(summary.test.per_class)
    return figures


def runs_pareto(records: list[Any], cost: str = "peak_memory_mb", registry: Any = None) -> go.Figure:
    """`plots.pareto` of registry records (`RunRecord`s) against `cost`; runs without accuracy are left out.

    With the `registry`, a multi-label run stands at its macro F1 rather than its accuracy (the exact-match
    share), and says so on hover and on the axis."""
    from studio.plots import pareto

    multi = {r.id for r in records if registry is not None and r.accuracy is not None
             and registry.task(r.id) == "multi_label"}  # fmt: skip
    points = [{"run": r.id, "label": f"{Path(r.model).name} {r.method}",
               "accuracy": r.f1_macro if r.id in multi else r.accuracy, "peak_memory_mb": r.peak_memory_mb,
               "method": r.method.split()[0], "train_seconds": r.train_seconds, "trainable_params": r.trainable_params,
               **({"flag": r.flag} if getattr(r, "flag", None) else {}),
               **({"scored by": "macro F1 (multi-label)"} if r.id in multi else {})}
              for r in records if r.accuracy is not None]  # fmt: skip
    figure = pareto(points, cost)
    if multi and len(multi) == len(points):
        figure.update_layout(title_text=f"Macro F1 vs {COSTS[cost]}")
        figure.update_yaxes(title_text="macro F1")
    elif multi:
        figure.update_yaxes(title_text="accuracy (multi-label: macro F1)")
    return figure
