"""Figures of a study (a grid's aggregated rows): accuracy heatmaps, rank sensitivity, method comparison.

Inputs are the rows of `studio.sweep.aggregate` (one per group of seeds: the axis labels, n, and
``<metric>_mean`` / ``<metric>_std``), so the same figures serve the UI, the report and the CLI. Every
function returns `plots.empty(...)` when the rows lack what it draws, never raises.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studio.plots import HEIGHT, empty


def _values(rows: list[dict], key: str) -> list[Any]:
    return list(dict.fromkeys(r[key] for r in rows if key in r))


def accuracy_heatmap(rows: list[dict], x: str, y: str, panel: str | None = None, metric: str = "accuracy") -> go.Figure:
    """Mean `metric` over the seeds for each (y, x) cell, one panel per value of `panel` (e.g. the model).

    For the GoEmotions grid: x = data.balance.num_samples, y = data.balance.num_labels, panel = model.name.
    """
    rows = [r for r in rows if r.get(f"{metric}_mean") is not None and x in r and y in r]
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
                                 f"{metric} %{{z:.1%}}<extra></extra>"), row=1, col=col)  # fmt: skip
        fig.update_xaxes(title_text=x.split(".")[-1], type="category", row=1, col=col)
    fig.update_yaxes(title_text=y.split(".")[-1], type="category", row=1, col=1)
    fig.update_layout(template="plotly_white", height=HEIGHT + 40, margin=dict(l=60, r=20, t=60, b=50),
                      title=dict(text=f"{metric} (mean over seeds)", x=0.01))  # fmt: skip
    return fig


def _cell_text(row: dict | None, metric: str) -> str:
    if row is None:
        return ""
    mean, std, n = row[f"{metric}_mean"], row.get(f"{metric}_std"), row.get("n", 1)
    return f"{mean:.1%}" + (f"<br>±{std:.1%}" if n and n > 1 and std is not None else "")


def rank_sensitivity(rows: list[dict], rank: str = "method.r") -> go.Figure:
    """Accuracy (mean ± std over seeds) and trainable parameters against the LoRA rank."""
    rows = sorted((r for r in rows if r.get("accuracy_mean") is not None and rank in r), key=lambda r: r[rank])
    if not rows:
        return empty("No finished runs over LoRA ranks yet")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ranks = [r[rank] for r in rows]
    fig.add_scatter(x=ranks, y=[r["accuracy_mean"] for r in rows], name="accuracy", mode="lines+markers",
                    error_y=dict(type="data", array=[r.get("accuracy_std") or 0 for r in rows]))  # fmt: skip
    params = [r.get("trainable_params_mean") for r in rows]
    if any(p is not None for p in params):
        fig.add_scatter(x=ranks, y=params, name="trainable parameters", mode="lines+markers",
                        line=dict(dash="dot"), secondary_y=True)  # fmt: skip
    fig.update_xaxes(type="log", title_text="LoRA rank r")
    fig.update_yaxes(title_text="accuracy", tickformat=".1%", secondary_y=False)
    fig.update_yaxes(title_text="trainable parameters", secondary_y=True, showgrid=False)
    fig.update_layout(template="plotly_white", height=HEIGHT, title=dict(text="Rank sensitivity", x=0.01))
    return fig


def method_comparison(rows: list[dict], group: str = "method", by: str | None = "model.name") -> go.Figure:
    """Accuracy (mean ± std) per method variant (e.g. attention vs attention+FFN), grouped by model."""
    rows = [r for r in rows if r.get("accuracy_mean") is not None and group in r]
    if not rows:
        return empty("No finished runs to compare methods yet")
    fig = go.Figure()
    for value in _values(rows, by) if by else [None]:
        part = [r for r in rows if by is None or r.get(by) == value]
        fig.add_bar(x=[str(r[group]) for r in part], y=[r["accuracy_mean"] for r in part], name=str(value or ""),
                    error_y=dict(type="data", array=[r.get("accuracy_std") or 0 for r in part]),
                    hovertemplate="%{x}: %{y:.2%}<extra>" + str(value or "") + "</extra>")  # fmt: skip
    low = min(r["accuracy_mean"] for r in rows)
    fig.update_yaxes(tickformat=".0%", range=[max(0.0, low - 0.1), 1.0], title_text="accuracy")
    fig.update_layout(template="plotly_white", height=HEIGHT, barmode="group",
                      title=dict(text="Accuracy by method (mean ± std over seeds)", x=0.01))  # fmt: skip
    return fig


HEATMAP_AXES = ("data.balance.num_samples", "data.balance.num_labels")


def grid_figures(axes: list[str], rows: list[dict]) -> dict[str, go.Figure]:
    """The figures a grid's axes call for: "heatmap" (label-count and sample-size axes, a panel per model)
    and "rank" (when its groups span more than two LoRA ranks)."""
    figures = {}
    if set(HEATMAP_AXES) <= set(axes):
        figures["heatmap"] = accuracy_heatmap(rows, *HEATMAP_AXES, "model.name" if "model.name" in axes else None)
    if rows and len({r["config"].method.r for r in rows}) > 2:
        figures["rank"] = rank_sensitivity([{**r, "method.r": r["config"].method.r} for r in rows])
    return figures


def runs_pareto(records: list[Any]) -> go.Figure:
    """`plots.pareto` of registry records (`RunRecord`s); runs without accuracy are left out."""
    from studio.plots import pareto

    return pareto([{"run": r.id, "accuracy": r.accuracy, "peak_memory_mb": r.peak_memory_mb,
                    "method": r.method.split()[0], "train_seconds": r.train_seconds,
                    "trainable_params": r.trainable_params} for r in records if r.accuracy is not None])  # fmt: skip
