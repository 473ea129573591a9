"""Every plotly figure of the studio, as pure functions of plain data: lists and dicts in, a Figure out.

The UI (``gr.Plot``) and the reports call these; nothing here imports torch, gradio or pandas. When there
is nothing to draw a function returns `empty(message)` instead of raising, so a page can show its plots
before the first number arrives. Colours are fixed per method and per split (`METHOD_COLORS`,
`SPLIT_COLORS`), so a LoRA run or the validation split looks the same on every page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from studio.methods import METHODS

# The studio's look, as plotly's default template rather than set on each figure: assigning a template to a
# figure validates and copies it (~20 ms of the ~28 ms a curve took), while the default is applied, already
# validated, when the figure is serialised. The Train tab redraws its curves every few seconds in the
# process that trains, so this is time taken from training (benchmarks/ui_cost.py).
pio.templates.default = "plotly_white"

Figure = go.Figure

HEIGHT = 320
METHOD_COLORS = {name: m.color for name, m in METHODS.items()}
SPLIT_COLORS = {"train": "#4C78A8", "validation": "#F58518", "test": "#72B7B2"}
MEMORY_PARTS = ("weights", "adapters", "gradients", "optimizer", "activations", "overhead")
_PART_COLORS = dict(zip(MEMORY_PARTS, ("#4C78A8", "#B279A2", "#F58518", "#E45756", "#54A24B", "#BAB0AC"), strict=True))
_EXTRA_COLORS = ("#9D755D", "#EECA3B", "#FF9DA6", "#72B7B2", "#BAB0AC", "#F58518")
_GOOD, _BAD, _MUTED, _ACCENT, _INK = "#2E7D32", "#C62828", "#9E9E9E", "#4C78A8", "#37474F"
REDRAW_SHARE = 0.01
"""The share of the app's time that redrawing a training's live curves may take (watching a run may slow it
by at most 2%: benchmarks/ui_cost.py). Building and serialising the figures is Python work that holds the GIL, which the
training thread of the same process needs between its GPU kernels."""


REDRAW_MAX_WAIT_S = 10.0
"""However slow a redraw, the curves are at most this many seconds behind (a slow CPU's draws)."""


def live_curves(view: Any) -> tuple[Figure, Figure, Figure]:
    """The Train tab's live figures of a run's `jobs.RunView`: loss (train and validation), validation
    metrics, learning rate. One function for the tab and benchmarks/ui_cost.py, which times what it costs."""
    return (
        loss_curves(view.train_loss, [(e["step"], e["loss"]) for e in view.evals if "loss" in e]),
        metric_curves(view.evals),
        lr_curve(view.learning_rate),
    )


def redraw_due(last: Mapping[str, float] | None, now: float, finished: bool) -> bool:
    """Whether the live curves may be redrawn now: always once the run has finished, else no sooner than the
    last redraw's cost (seconds) / REDRAW_SHARE after it. `last` is {"at": time, "cost": seconds} of the
    last redraw (None before the first). A 50 ms redraw waits 5 s; a 10 ms one, at the timer's pace; none waits
    longer than REDRAW_MAX_WAIT_S."""
    if finished or not last:
        return True
    return now - last["at"] >= min(last["cost"] / REDRAW_SHARE, REDRAW_MAX_WAIT_S)


_TOO_MANY_CLASSES = 8  # metric_curves: beyond this many per-class F1 lines start hidden (legend-only)
_FRONT_LABELS = 6  # pareto: beyond this many runs on the front, their names only show on hover
_HORIZONTAL_LABELS = 30  # label_distribution: beyond this many labels the bars turn horizontal


def _layout(
    fig: Figure, title: str = "", *, height: int = HEIGHT, x_title: str = "", y_title: str = "", **layout: Any
) -> Figure:
    """The shared look: white template, compact margins, title top left, legend above the plot."""
    margin = dict(l=56, r=24, t=64 if title else 36, b=44) | layout.pop("margin", {})
    # a row of legend above the plot; past 6 entries it would wrap up into the title, so a scrolling column
    legend = dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom")
    if len(fig.data) > 6:
        legend = dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top")
    fig.update_layout(
        height=height,
        margin=margin,
        legend=legend | dict(title_text=""),
        hoverlabel=dict(namelength=-1),
        font=dict(size=12),
        **layout,
    )
    if title:
        fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", y=0.98, yanchor="top", font_size=15))
    if x_title:
        fig.update_xaxes(title_text=x_title)
    if y_title:
        fig.update_yaxes(title_text=y_title)
    return fig


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _xy(points: Iterable[Any]) -> tuple[list[float], list[float]]:
    """(xs, ys) of (x, y) pairs, dropping pairs with a missing or non-finite number."""
    xs, ys = [], []
    for point in points or ():
        if len(point) >= 2 and _finite(point[0]) and _finite(point[1]):
            xs.append(point[0])
            ys.append(point[1])
    return xs, ys


def _ordered(keys: Iterable[str], preferred: Iterable[str]) -> list[str]:
    """`keys` with the `preferred` ones first, in that order, then the rest as they came."""
    keys = list(keys)
    return [k for k in preferred if k in keys] + [k for k in keys if k not in preferred]


def _color(name: str, table: Mapping[str, str]) -> str:
    """The fixed colour of a known method/split; an unknown name gets a stable colour from its letters."""
    return table.get(str(name).lower()) or _EXTRA_COLORS[sum(map(ord, str(name))) % len(_EXTRA_COLORS)]


def method_color(name: str) -> str:
    """The colour of a method (or of any compared value, e.g. a grid's named setup): the same on every chart."""
    return _color(name, METHOD_COLORS)


def _mem_unit(largest_mb: float) -> tuple[str, float]:
    """("GB", 1024) once numbers pass 2048 MB (four-digit MB ticks read worse than 2.5 GB), else MB."""
    return ("GB", 1024.0) if largest_mb > 2048 else ("MB", 1.0)


def _mem(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb > 2048 else f"{mb:.0f} MB"


def _percent(share: float) -> str:
    """43% / 4.2% / <0.1%: whole percents once large, a decimal when small, never a misleading 0%."""
    if 0 < share < 0.001:
        return "<0.1%"
    return f"{share:.0%}" if share == 0 or share >= 0.1 else f"{share:.1%}"


def empty(message: str, height: int = HEIGHT) -> Figure:
    """A figure with no traces and `message` centred in it (what every function shows when it has no data)."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=14, color=_MUTED)
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height)


def label_distribution(counts: dict[str, dict[str, int]], multi_label: bool = False) -> Figure:
    """Rows per label, grouped bars with one colour per split.

    Args:
        counts: ``counts[split][label] = rows``, splits usually train / validation / test. Above 30
            labels the bars turn horizontal, sorted by train count (largest on top).
        multi_label: the rows carrying each label (a text with several labels counts once for each); the title
            says so.
    """
    splits = [s for s in _ordered(counts or {}, SPLIT_COLORS) if counts[s]]
    labels = list(dict.fromkeys(str(label) for s in splits for label in counts[s]))
    if not labels:
        return empty("No data loaded yet")
    horizontal = len(labels) > _HORIZONTAL_LABELS
    if horizontal:
        ranking = counts.get("train") or counts[splits[0]]
        labels.sort(key=lambda label: -ranking.get(label, 0))  # stable: ties keep their order
    fig = go.Figure()
    for split in splits:
        rows = [int(counts[split].get(label, 0)) for label in labels]
        shares = [r / (sum(rows) or 1) for r in rows]
        axis = "y" if horizontal else "x"
        value = "x" if horizontal else "y"
        hover = f"%{{{axis}}}<br>{split}: %{{{value}:,}} rows (%{{customdata:.1%}})<extra></extra>"
        style = dict(marker_color=_color(split, SPLIT_COLORS), orientation="h" if horizontal else "v")
        fig.add_bar(name=split, **{axis: labels, value: rows}, customdata=shares, hovertemplate=hover, **style)
    title = "Rows carrying each label (a text counts once per label)" if multi_label else "Rows per label"
    if horizontal:
        fig.update_yaxes(type="category", autorange="reversed")
        return _layout(fig, title, height=min(2400, 120 + 16 * len(labels)), x_title="rows", barmode="group")
    fig.update_xaxes(type="category")  # labels such as "0", "1" stay names, not numbers
    return _layout(fig, title, y_title="rows", barmode="group")


def token_lengths(lengths: list[int], max_length: int, truncated_share: float | None = None) -> Figure:
    """Histogram of token counts per text, with a dashed line at `max_length` naming the truncated share.

    Args:
        lengths: untruncated token counts (`studio.tokenization.token_lengths`).
        max_length: where tokenization cuts; texts longer than it count as truncated.
        truncated_share: 0..1; measured from `lengths` when not given.
    """
    values = [v for v in lengths or () if _finite(v)]
    if not values:
        return empty("No token lengths yet")
    if truncated_share is None:
        truncated_share = sum(v > max_length for v in values) / len(values)
    hover = "%{x} tokens: %{y:,} texts<extra></extra>"
    fig = go.Figure(go.Histogram(x=values, nbinsx=60, marker_color=SPLIT_COLORS["train"], hovertemplate=hover))
    line = dict(dash="dash", width=2, color=_BAD if truncated_share > 0 else _INK)
    label = f"max_length {max_length} — {_percent(truncated_share)} truncated"
    fig.add_vline(x=max_length, line=line, annotation_text=label, annotation_position="top right")
    title = f"Token lengths ({len(values):,} texts)"
    return _layout(fig, title, x_title="tokens per text", y_title="texts", showlegend=False, bargap=0.05)


def memory_breakdown(parts: dict[str, float], available_mb: float | None, device_name: str) -> Figure:
    """One stacked horizontal bar of estimated memory by part, and a line at the device's memory.

    Args:
        parts: MB per part; weights, adapters, gradients, optimizer, activations, overhead come first in
            that order, other keys after them; parts of 0 MB are left out.
        available_mb: the device's memory; None (or 0) draws no line and no fits/does-not-fit verdict.
        device_name: names the title ("NVIDIA H100", "CPU").

    A total far over the device's memory (batch 4096) would squeeze the line against the axis: the axis then
    stops at OVER_AXIS x the device's memory, the bar runs to its end and the text says "over by X GB".
    """
    items = [(k, float(parts[k])) for k in _ordered(parts or {}, MEMORY_PARTS) if _finite(parts[k]) and parts[k] > 0]
    if not items:
        return empty("No memory estimate yet")
    total = sum(mb for _, mb in items)
    available = available_mb if _finite(available_mb) and available_mb > 0 else None
    end = max(total, available or 0) * 1.15
    if available is not None and total > available * OVER_AXIS / 1.15:
        end = available * OVER_AXIS  # capped: the bar is cut at the axis' end
    unit, scale = _mem_unit(end)  # the bar and the line share one axis, so one unit
    fig = go.Figure()
    for name, mb in items:
        hover = f"{name}: {_mem(mb)} ({mb / total:.0%})<extra></extra>"
        fig.add_bar(name=name, x=[mb / scale], y=["estimate"], orientation="h", hovertemplate=hover,
                    marker_color=_color(name, _PART_COLORS))  # fmt: skip
    verdict, colour = "", _INK
    if available is not None:
        fits = total <= available
        verdict, colour = (" — fits", _GOOD) if fits else (f" — over by {_mem(total - available)}", _BAD)
        side = "right" if available < end / 2 else "left"  # the label on the side with room for it
        fig.add_vline(x=available / scale, line=dict(dash="dot", width=2, color=_INK),
                      annotation_text=f"available: {_mem(available)}", annotation_position=f"top {side}")  # fmt: skip
    text = f"total {_mem(total)}{verdict}" + (" ▸" if total > end else "")
    at = min(total, end)
    fig.add_annotation(x=at / scale, y="estimate", xanchor="right" if at > end / 2 else "left", yanchor="bottom",
                       yshift=26, showarrow=False, text=text, font=dict(color=colour, size=13),
                       bgcolor="rgba(255,255,255,0.8)")  # fmt: skip
    fig.update_xaxes(range=[0, end / scale], rangemode="tozero")
    fig.update_yaxes(showticklabels=False)
    return _layout(fig, f"Estimated memory on {device_name}", height=280, x_title=unit, barmode="stack", bargap=0.55,
                   margin=dict(t=88))  # room for a legend of two rows in a narrow column  # fmt: skip


OVER_AXIS = 1.6
"""How far past the device's memory the memory bar's axis goes before the bar is cut (and says by how much)."""


def loss_curves(train: list[tuple[int, float]], evals: list[tuple[int, float]]) -> Figure:
    """Training loss (line) and validation loss (markers and line) against the step; each a list of (step, loss)."""
    train_x, train_y = _xy(train)
    eval_x, eval_y = _xy(evals)
    if not train_x and not eval_x:
        return empty("No losses logged yet")
    fig = go.Figure()
    if train_x:
        line = dict(color=SPLIT_COLORS["train"], width=2)
        fig.add_scatter(x=train_x, y=train_y, name="train loss", mode="lines", line=line, hovertemplate="%{y:.4f}")
    if eval_x:
        line = dict(color=SPLIT_COLORS["validation"], width=2)
        fig.add_scatter(x=eval_x, y=eval_y, name="validation loss", mode="lines+markers", line=line, marker_size=7,
                        hovertemplate="%{y:.4f}")  # fmt: skip
    return _layout(fig, "Loss", x_title="step", y_title="loss", hovermode="x unified")


def metric_curves(evals: list[dict]) -> Figure:
    """Validation metrics against the step: accuracy and macro F1 bold, weighted F1 dashed, per-class F1 dotted.
    A multi-label run's (its evaluations carry "f1_micro") adds micro F1 and calls its accuracy "exact match".

    Args:
        evals: one dict per evaluation with "step" and any of "accuracy", "f1_macro", "f1_weighted", "f1_micro"
            and "f1/<label>" (0..1). Above 8 classes the per-class lines start hidden (click the legend).
    """
    rows = [e for e in evals or () if isinstance(e, Mapping) and _finite(e.get("step"))]
    classes = list(dict.fromkeys(k for e in rows for k in e if isinstance(k, str) and k.startswith("f1/")))
    multi = any("f1_micro" in e for e in rows)  # a multi-label run: its accuracy is the exact-match share
    lines = [
        ("accuracy", "exact match" if multi else "accuracy", dict(width=3.5, color="#4C78A8")),
        ("f1_macro", "macro F1", dict(width=3.5, color="#F58518")),
        *([("f1_micro", "micro F1", dict(width=2.5, color="#B279A2"))] if multi else []),
        ("f1_weighted", "weighted F1", dict(width=1.5, color="#54A24B", dash="dash")),
    ]
    lines += [(key, f"F1 {key[3:]}", dict(width=1, dash="dot")) for key in classes]
    fig = go.Figure()
    for key, name, line in lines:
        xs, ys = _xy((e["step"], e.get(key)) for e in rows)
        if xs:
            per_class = key.startswith("f1/")
            visible = "legendonly" if per_class and len(classes) > _TOO_MANY_CLASSES else True
            fig.add_scatter(x=xs, y=ys, name=name, mode="lines+markers", line=line, marker_size=4 if per_class else 7,
                            visible=visible, hovertemplate="%{y:.1%}")  # fmt: skip
    if not fig.data:
        return empty("No evaluations yet")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")  # 1.02: a line at 100% is not cut in half
    title = "Validation metrics (labels given at 0.5)" if multi else "Validation metrics"
    return _layout(fig, title, x_title="step", hovermode="x unified")


def lr_curve(points: list[tuple[int, float]]) -> Figure:
    """Learning rate against the step, from a list of (step, learning_rate)."""
    xs, ys = _xy(points)
    if not xs:
        return empty("No learning rates logged yet")
    if not any(y > 0 for y in ys):  # an axis of zeros only reads 0.0e+0 to 1.0e+0: say what is missing instead
        return empty("No learning rate above 0 logged yet: the curve appears after the first training steps")
    hover = "step %{x}<br>learning rate %{y:.3e}<extra></extra>"
    mode = "lines" if len(xs) > 1 else "markers"  # a single logged step: a line of one point would not show
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode=mode, line=dict(color=_ACCENT, width=2), hovertemplate=hover))
    fig.update_yaxes(tickformat=".1e", rangemode="tozero")
    return _layout(fig, "Learning rate", x_title="step", y_title="learning rate", showlegend=False)


def lr_find_curve(
    rates: list[float], losses: list[float], smoothed: list[float], suggested: float | None = None, label: str = ""
) -> Figure:
    """The learning-rate range test (studio/lr_find.py): each step's loss (faint) and its moving average against
    the rate (log scale), and a line at the suggested rate, named by `label` (e.g. "suggested 3e-4 (steepest)")."""
    raw_x, raw_y = _xy(zip(rates or (), losses or (), strict=False))
    xs, ys = _xy(zip(rates or (), smoothed or (), strict=False))
    if not xs:
        return empty("No range test yet")
    fig = go.Figure()
    fig.add_scatter(
        x=raw_x,
        y=raw_y,
        name="loss (each step)",
        mode="markers",
        opacity=0.35,
        marker=dict(color=_MUTED, size=5),
        hovertemplate="rate %{x:.2e}<br>loss %{y:.4f}<extra></extra>",
    )
    fig.add_scatter(x=xs, y=ys, name="smoothed", mode="lines", line=dict(color=_ACCENT, width=3),
                    hovertemplate="rate %{x:.2e}<br>smoothed %{y:.4f}<extra></extra>")  # fmt: skip
    # the losses past divergence can be orders larger: the axis follows the smoothed curve, with room around it
    low, high = min(ys), max(ys)
    pad = (high - low) or abs(high) or 1.0
    bottom, top = low - 0.1 * pad, high + 0.25 * pad
    if _finite(suggested) and suggested > 0:  # a trace, not add_vline: its label would sit wrong on a log axis
        fig.add_scatter(x=[suggested, suggested], y=[bottom, top], name=label or f"suggested {suggested:.1e}",
                        mode="lines", line=dict(dash="dash", width=2, color=_GOOD), hoverinfo="skip")  # fmt: skip
    fig.update_yaxes(range=[bottom, top])
    fig.update_xaxes(type="log", exponentformat="e")
    return _layout(fig, "Learning-rate range test", x_title="learning rate (log scale)", y_title="training loss")


def confusion_matrix(matrix: list[list[int]], labels: list[str], normalize: bool = True) -> Figure:
    """Heat map of predictions: rows are true labels, columns predicted, the diagonal top left to bottom right.

    Args:
        matrix: ``matrix[true][predicted]`` = count, square, in the order of `labels`.
        normalize: colour by each row's share (recall per cell) instead of raw counts. Cells always show
            the count and its row percentage.
    """
    n = len(labels or ())
    if not matrix or not n:
        return empty("No confusion matrix yet")
    if len(matrix) != n or any(len(row) != n for row in matrix):
        return empty(f"Confusion matrix is not {n} x {n} like its labels")
    names = [str(label) for label in labels]
    shares = [[c / (sum(row) or 1) for c in row] for row in matrix]
    text = [[f"{c:,}<br>{c / (sum(row) or 1):.0%}" for c in row] for row in matrix]
    fig = go.Figure(go.Heatmap(
        z=shares if normalize else matrix, x=names, y=names, text=text, colorscale="Blues", zmin=0,
        zmax=1 if normalize else None, colorbar=dict(title="row share" if normalize else "count", thickness=12),
        texttemplate="%{text}" if n <= 15 else None,  # beyond 15 classes cell text is unreadable: hover only
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
    ))  # fmt: skip
    fig.update_xaxes(type="category", tickangle=-45 if n > 8 else 0)
    fig.update_yaxes(type="category", autorange="reversed")
    return _layout(
        fig, "Confusion matrix", height=min(900, max(HEIGHT, 140 + 26 * n)), x_title="predicted", y_title="true"
    )


def reliability_diagram(calibration: Any, multi_label: bool = False) -> Figure:
    """Accuracy against mean confidence in each confidence bin of the test split, before and after temperature
    scaling (a `results.Calibration`); the diagonal is perfect calibration. Marker size follows the bin's rows.

    `multi_label`: the bins are over every (text, label) probability (`calibration.binary_bins`): the share of
    them whose text carries the label against the mean probability, so 40% should hold the label 40% of the time.
    """
    if calibration is None:
        return empty("No calibration (the run had no validation rows)")
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", hoverinfo="skip",
                               line=dict(color=_MUTED, dash="dot")))  # fmt: skip
    c = calibration
    after = "T per label" if c.per_label else f"T = {c.temperature:.2f}"
    unit, x_name, y_name = ("(text, label) pairs", "probability", "carry the label") if multi_label else (
        "rows", "confidence", "accuracy")  # fmt: skip
    for name, bins, color in (("raw", c.bins_before, _BAD), (after, c.bins_after, _ACCENT)):
        largest = max((b["count"] for b in bins), default=1)
        fig.add_trace(go.Scatter(
            x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers", name=name,
            marker=dict(color=color, size=[6 + 14 * math.sqrt(b["count"] / largest) for b in bins]),
            line=dict(color=color), text=[f"{b['count']:,} {unit}" for b in bins],
            hovertemplate=f"{x_name} %{{x:.3f}}<br>{y_name} %{{y:.3f}}<br>%{{text}}<extra>{name}</extra>",
        ))  # fmt: skip
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    title = f"Reliability (test ECE {c.ece_before:.3f} -> {c.ece_after:.3f})"  # the axes say what a bin holds
    if multi_label:
        return _layout(fig, title, x_title="mean probability of a (text, label)", y_title="share that carry the label")
    return _layout(fig, title, x_title="mean confidence in the bin", y_title="accuracy in the bin")


def probabilities(probs: dict[str, float], top: int = 10) -> Figure:
    """Horizontal bars of the `top` most probable classes, largest first and highlighted; probs are 0..1."""
    items = sorted(((str(k), v) for k, v in (probs or {}).items() if _finite(v)), key=lambda kv: -kv[1])
    shown = items[: max(1, top)]
    if not shown:
        return empty("No prediction yet")
    names = [name for name, _ in shown]
    values = [p for _, p in shown]
    colors = [_ACCENT] + [_MUTED] * (len(shown) - 1)  # the best class stands out
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", text=[f"{p:.1%}" for p in values], marker_color=colors,
                           textposition="auto", hovertemplate="%{y}: %{x:.2%}<extra></extra>"))  # fmt: skip
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(type="category", autorange="reversed")
    title = f"Top {len(shown)} of {len(items)} classes" if len(shown) < len(items) else "Class probabilities"
    return _layout(fig, title, height=max(HEIGHT, 100 + 26 * len(shown)), x_title="probability", showlegend=False)


def label_probabilities(probs: Mapping[str, float], thresholds: Mapping[str, float], title: str = "") -> Figure:
    """A multi-label prediction: one bar per label (its probability, most probable on top), filled where it reaches
    its threshold (the label is given), grey where it does not, with each label's threshold as a dark tick across
    its bar and the probability written at the right end of the row, clear of the ticks.

    Args:
        probs: label -> probability (0..1; sigmoids, so they need not sum to 1).
        thresholds: label -> the probability at which the label is given (a label without one takes 0.5).
    """
    items = sorted(((str(k), float(v)) for k, v in (probs or {}).items() if _finite(v)), key=lambda kv: -kv[1])
    if not items:
        return empty("No prediction yet")
    names = [n for n, _ in items]
    cut = {n: float(thresholds.get(n, 0.5)) for n in names}
    fig = go.Figure()
    for given, name, color in ((True, "given (reaches its threshold)", _ACCENT), (False, "not given", "#CFD8DC")):
        part = [(n, p) for n, p in items if (p >= cut[n]) == given]
        fig.add_bar(x=[p for _, p in part], y=[n for n, _ in part], orientation="h", name=name, marker_color=color,
                    customdata=[cut[n] for n, _ in part], showlegend=bool(part),
                    hovertemplate="%{y}: %{x:.1%} (threshold %{customdata:.0%})<extra>" + name
                    + "</extra>")  # fmt: skip
    fig.add_scatter(x=[cut[n] for n in names], y=names, mode="markers", name="threshold", hoverinfo="skip",
                    marker=dict(symbol="line-ns", size=18, line=dict(width=3, color=_INK)))  # fmt: skip
    fig.add_scatter(x=[1.0] * len(names), y=names, mode="text", text=[_percent(p) for _, p in items],
                    textposition="middle right", showlegend=False, hoverinfo="skip", cliponaxis=False)  # fmt: skip
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=names, autorange="reversed",
                     automargin=True)  # fmt: skip
    # t: the title above the legend's row, each on its own line however tall the figure
    return _layout(fig, title, height=max(HEIGHT, 130 + 24 * len(names)), x_title="probability", barmode="overlay",
                   margin=dict(t=96, r=56), hovermode="closest")  # fmt: skip


def label_scores(per_class: Mapping[str, Any]) -> Figure:
    """A multi-label run's test F1 per label (what a confusion matrix shows of a single-label run: where it errs),
    most accurate on top, each bar's text its F1 and the rows that carry the label. `per_class`: label ->
    `results.ClassScores`."""
    items = sorted(((str(n), c) for n, c in (per_class or {}).items()), key=lambda nc: -nc[1].f1)
    if not items:
        return empty("No per-label scores yet")
    fig = go.Figure(go.Bar(
        x=[c.f1 for _, c in items], y=[n for n, _ in items], orientation="h", marker_color=_ACCENT,
        text=[f"{c.f1:.2f} · {c.support:,} rows" for _, c in items], textposition="outside", cliponaxis=False,
        customdata=[[c.precision, c.recall] for _, c in items],
        hovertemplate="%{y}: F1 %{x:.3f}<br>precision %{customdata[0]:.3f}, recall %{customdata[1]:.3f}<extra></extra>",
    ))  # fmt: skip
    fig.update_xaxes(range=[0, 1.25], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".2f")  # as the bars say F1
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    return _layout(fig, "F1 per label (test)", height=max(HEIGHT, 100 + 20 * len(items)), x_title="F1",
                   showlegend=False)  # fmt: skip


def runs_overlay(series: dict[str, list[tuple[float, float]]], metric: str, x_label: str = "step",
                 colors: Mapping[str, str] | None = None) -> Figure:  # fmt: skip
    """One line per run of `metric` against `x_label`, to compare runs; ``series[run] = [(x, value), ...]``;
    `colors` fixes a line's colour by its name."""
    fig = go.Figure()
    hover = f"%{{fullData.name}}<br>{x_label} %{{x}}<br>{metric} %{{y:.4g}}<extra></extra>"
    for run, points in (series or {}).items():
        xs, ys = _xy(points)
        if xs:
            mode = "lines+markers" if len(xs) <= 30 else "lines"
            line = dict(color=colors[run]) if colors and run in colors else None
            fig.add_scatter(x=xs, y=ys, name=str(run), mode=mode, hovertemplate=hover, line=line)
    if not fig.data:
        return empty(f"No {metric} curves to compare")
    if metric == "accuracy" or metric.startswith(("f1", "precision", "recall")):  # 0..1 shares read as percents
        fig.update_yaxes(tickformat=".0%")
    return _layout(fig, f"{metric} by run", x_title=x_label, y_title=metric)


COSTS = {"peak_memory_mb": "peak memory", "train_seconds": "training time"}
"""What a Pareto plot weighs accuracy against (lower is better), and its axis name."""


def _dominates(a: Mapping, b: Mapping, cost: str) -> bool:
    """a is at least as good on both counts and better on one (more accurate, or cheaper)."""
    at_least = a[cost] <= b[cost] and a["accuracy"] >= b["accuracy"]
    return at_least and (a[cost] < b[cost] or a["accuracy"] > b["accuracy"])


def pareto_front(points: list[dict], cost: str = "peak_memory_mb") -> list[dict]:
    """The runs no other run beats on both accuracy (higher) and `cost` (lower: peak memory or training
    time), cheapest first.

    Runs equal on both counts are all on the front (neither beats the other); runs missing either number
    are ignored.
    """
    usable = [p for p in points or () if _finite(p.get("accuracy")) and _finite(p.get(cost))]
    front = [p for p in usable if not any(_dominates(q, p, cost) for q in usable)]
    return sorted(front, key=lambda p: (p[cost], -p["accuracy"]))


def _run_hover(p: Mapping) -> str:
    lines = [f"<b>{p.get('run', '?')}</b>", f"method: {p.get('method', '?')}", f"accuracy: {p['accuracy']:.2%}"]
    if _finite(p.get("peak_memory_mb")):
        lines.append(f"peak memory: {_mem(p['peak_memory_mb'])}")
    if _finite(p.get("train_seconds")):
        lines.append(f"train time: {p['train_seconds']:,.0f} s")
    if _finite(p.get("trainable_params")):
        lines.append(f"trainable params: {p['trainable_params']:,.0f}")
    known = {"run", "label", "method", "accuracy", "peak_memory_mb", "train_seconds", "trainable_params"}
    lines += [f"{k}: {v}" for k, v in p.items() if k not in known and isinstance(v, str | int | float)]
    return "<br>".join(lines)


def pareto(points: list[dict], cost: str = "peak_memory_mb") -> Figure:
    """Accuracy against `cost` (peak memory or training time), one colour per method, the Pareto front
    joined by a step line.

    Args:
        points: one dict per run with "run", "accuracy" (0..1), the cost ("peak_memory_mb" or
            "train_seconds"), "method" (full / lora / qlora / ia3 or any label) and optionally the other
            cost, "trainable_params" and "flag" (a run that did not learn: collapsed, diverged, drawn as a
            grey cross and kept off the front); every field shows on hover. Runs missing accuracy or the
            cost are skipped.
    """
    usable = [p for p in points or () if _finite(p.get("accuracy")) and _finite(p.get(cost))]
    if not usable:
        return empty(f"No finished runs with accuracy and {COSTS[cost]} yet")
    if cost == "peak_memory_mb":
        unit, scale = _mem_unit(max(p[cost] for p in usable))
    else:
        unit, scale = ("min", 60.0) if max(p[cost] for p in usable) > 600 else ("s", 1.0)
    fig = go.Figure()
    learned = [p for p in usable if not p.get("flag")]
    for method in _ordered(dict.fromkeys(str(p.get("method", "?")) for p in learned), METHOD_COLORS):
        group = [p for p in learned if str(p.get("method", "?")) == method]
        marker = dict(size=11, color=_color(method, METHOD_COLORS), line=dict(width=1, color="white"))
        xs, ys = [p[cost] / scale for p in group], [p["accuracy"] for p in group]
        hover = [_run_hover(p) for p in group]
        fig.add_scatter(x=xs, y=ys, name=method, mode="markers", marker=marker, hovertext=hover, hoverinfo="text")
    flagged = [p for p in usable if p.get("flag")]
    if flagged:  # shown, never on the front: a run that predicts one class is no trade-off worth making
        flags = "/".join(dict.fromkeys(str(p["flag"]) for p in flagged))
        fig.add_scatter(x=[p[cost] / scale for p in flagged], y=[p["accuracy"] for p in flagged], mode="markers",
                        name=f"did not learn ({flags}, {len(flagged)})", hoverinfo="text",
                        marker=dict(size=10, symbol="x", color="#9E9E9E"),
                        hovertext=[_run_hover(p) for p in flagged])  # fmt: skip
    front = pareto_front(learned, cost)  # the step line ("hv"): the best accuracy reachable within each budget
    line = dict(shape="hv", dash="dash", color=_INK, width=1.5)
    # Name the front's points (by "label", else the run) while they are few enough to read; hover names all.
    text = [str(p.get("label") or p.get("run", "")) for p in front] if len(front) <= _FRONT_LABELS else None
    fig.add_scatter(x=[p[cost] / scale for p in front], y=[p["accuracy"] for p in front], line=line,
                    mode="lines+text" if text else "lines", name="Pareto front", text=text,
                    textposition="top right", hoverinfo="skip")  # fmt: skip
    low, high = min(p["accuracy"] for p in usable), max(p["accuracy"] for p in usable)
    pad = max(0.02, (high - low) * 0.15)  # accuracy lives in 0..1: never let autorange show -50% or 150%
    fig.update_yaxes(tickformat=".1%", range=[max(0.0, low - pad), min(1.0, high + pad) + 0.01])
    cheap, dear = min(p[cost] for p in usable) / scale, max(p[cost] for p in usable) / scale
    # runs of (nearly) one cost: a span of +-10% instead of autorange's, which ticked 1,486.5 MB for one run
    room = max(0.1 * dear, 0.15 * (dear - cheap))
    fig.update_xaxes(range=[max(0.0, cheap - room), dear + room])
    return _layout(fig, f"Accuracy vs {COSTS[cost]}", x_title=f"{COSTS[cost]} ({unit})", y_title="accuracy",
                   hovermode="closest")  # fmt: skip


def usage_history(samples: list[dict]) -> Figure:
    """Live hardware monitor: utilisation (%, left axis) and memory used (right axis) against time.

    Args:
        samples: dicts with "time" (seconds since start) and "gpu_util_pct" + "gpu_mem_used_mb" on a GPU,
            or "cpu_pct" + "ram_used_mb" on CPU, and "process_rss_mb" (the RAM of the process that trains); a
            series missing from every sample is not drawn. With the process's RAM, the machine's (every program
            on it) is only context: listed in the legend, drawn when clicked.
    """
    rows = [s for s in samples or () if isinstance(s, Mapping) and _finite(s.get("time"))]
    own = any(_finite(s.get("process_rss_mb")) for s in rows)
    drawn = ("gpu_mem_used_mb", "process_rss_mb") if own else ("gpu_mem_used_mb", "ram_used_mb")
    memory_max = max((s[k] for s in rows for k in drawn if _finite(s.get(k))), default=0)
    unit, scale = _mem_unit(memory_max)
    series = [
        ("gpu_util_pct", "GPU utilisation", "y", 1, "#4C78A8", None),
        ("cpu_pct", "CPU", "y", 1, "#54A24B", None),
        ("gpu_mem_used_mb", "GPU memory", "y2", scale, "#E45756", "dot"),
        ("process_rss_mb", "RAM of this run's process", "y2", scale, "#B279A2", None),
        ("ram_used_mb", "RAM of the whole machine" if own else "RAM", "y2", scale, _MUTED if own else "#B279A2",
         "dot"),
    ]  # fmt: skip
    fig = go.Figure()
    percent_max = 100.0
    for key, name, axis, div, colour, dash in series:
        xs, ys = _xy((s["time"], s.get(key)) for s in rows)
        if xs:
            ys = [y / div for y in ys]
            if axis == "y":
                percent_max = max(percent_max, *ys)  # a process's CPU % can pass 100 on several cores
            fmt = "%{y:.0f}%" if axis == "y" else f"%{{y:.{1 if unit == 'GB' else 0}f}} {unit}"
            line = dict(color=colour, width=2, dash=dash)
            visible = "legendonly" if own and key == "ram_used_mb" else True
            fig.add_scatter(x=xs, y=ys, name=name, yaxis=axis, mode="lines", line=line, hovertemplate=fmt,
                            visible=visible)  # fmt: skip
    if not fig.data:
        return empty("No hardware samples yet")
    fig.update_layout(
        yaxis=dict(title_text="utilisation (%)", range=[0, percent_max * 1.02]),
        yaxis2=dict(title_text=f"memory ({unit})", overlaying="y", side="right", rangemode="tozero", showgrid=False),
    )
    return _layout(fig, "Hardware", x_title="seconds since start", hovermode="x unified", margin=dict(r=64))
