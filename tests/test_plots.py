"""Figures hold the numbers they were given, mark what they promise, and never raise on empty input."""

from __future__ import annotations

import json
import subprocess
import sys

import plotly.graph_objects as go
import pytest

from studio import plots


def annotations(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def trace(fig: go.Figure, name: str):
    return next(t for t in fig.data if t.name == name)


def test_label_distribution_bars_hold_the_counts_per_split():
    counts = {"test": {"neg": 4, "pos": 6}, "train": {"neg": 40, "pos": 60}, "validation": {"pos": 7, "neg": 3}}
    fig = plots.label_distribution(counts)
    assert [t.name for t in fig.data] == ["train", "validation", "test"]  # fixed split order, whatever the input's
    assert all(list(t.x) == ["neg", "pos"] for t in fig.data)
    assert [list(t.y) for t in fig.data] == [[40, 60], [3, 7], [4, 6]]  # validation re-ordered to the label order
    assert [t.marker.color for t in fig.data] == [plots.SPLIT_COLORS[s] for s in ("train", "validation", "test")]
    assert fig.layout.xaxis.type == "category"  # labels "0"/"1" must stay names


def test_label_distribution_many_labels_turn_horizontal_sorted_by_train():
    labels = [f"l{i}" for i in range(35)]
    train = {label: (i * 7) % 35 for i, label in enumerate(labels)}
    fig = plots.label_distribution({"train": train, "validation": {"l3": 99}})
    bars = trace(fig, "train")
    assert bars.orientation == "h"
    assert list(bars.y) == sorted(labels, key=lambda label: -train[label])
    assert list(bars.x) == sorted(train.values(), reverse=True)
    val = trace(fig, "validation")
    assert dict(zip(val.y, val.x, strict=True))["l3"] == 99 and sum(val.x) == 99  # missing labels count 0
    assert fig.layout.yaxis.autorange == "reversed"  # largest on top


def test_token_lengths_marks_max_length_with_the_truncated_share():
    lengths = [100] * 57 + [257] * 43  # 257 > 256 is truncated; 256 itself would not be
    fig = plots.token_lengths(lengths, 256)
    assert list(fig.data[0].x) == lengths
    (shape,) = fig.layout.shapes
    assert shape.x0 == shape.x1 == 256 and shape.line.dash == "dash"
    assert "max_length 256 — 43% truncated" in annotations(fig)
    assert fig.layout.xaxis.title.text == "tokens per text"

    assert plots.token_lengths([100, 256], 256).layout.annotations[0].text == "max_length 256 — 0% truncated"
    assert "max_length 128 — 4.2% truncated" in annotations(plots.token_lengths([1, 2], 128, truncated_share=0.042))


def test_memory_breakdown_stacks_parts_in_order_and_checks_the_fit():
    parts = {"overhead": 200, "weights": 1000, "adapters": 0, "optimizer": 1000, "gradients": 500, "activations": 300}
    fig = plots.memory_breakdown(parts, available_mb=8192, device_name="NVIDIA T4")
    assert [t.name for t in fig.data] == ["weights", "gradients", "optimizer", "activations", "overhead"]
    assert fig.layout.barmode == "stack" and all(t.orientation == "h" for t in fig.data)
    assert [t.x[0] for t in fig.data] == pytest.approx([v / 1024 for v in (1000, 500, 1000, 300, 200)])  # GB
    assert fig.layout.xaxis.title.text == "GB"
    assert fig.layout.shapes[0].x0 == 8.0  # the available line, in the axis unit
    assert "total 2.9 GB — fits" in annotations(fig) and "available: 8.0 GB" in annotations(fig)

    tight = plots.memory_breakdown(parts, available_mb=2048, device_name="small GPU")
    assert "total 2.9 GB — over by 952 MB" in annotations(tight) and tight.layout.shapes[0].x0 == 2.0
    fit_colour = next(a.font.color for a in fig.layout.annotations if a.text.startswith("total"))
    miss_colour = next(a.font.color for a in tight.layout.annotations if a.text.startswith("total"))
    assert fit_colour != miss_colour

    unknown = plots.memory_breakdown({"weights": 400, "activations": 200}, available_mb=None, device_name="CPU")
    assert annotations(unknown) == ["total 600 MB"] and not unknown.layout.shapes
    assert [t.x[0] for t in unknown.data] == [400, 200] and unknown.layout.xaxis.title.text == "MB"


def test_loss_curves_plot_train_and_validation_loss():
    fig = plots.loss_curves([(10, 0.9), (20, 0.6), (30, 0.5)], [(20, 0.7), (40, 0.55)])
    train, val = trace(fig, "train loss"), trace(fig, "validation loss")
    assert (list(train.x), list(train.y)) == ([10, 20, 30], [0.9, 0.6, 0.5]) and train.mode == "lines"
    assert (list(val.x), list(val.y)) == ([20, 40], [0.7, 0.55]) and "markers" in val.mode
    assert [t.name for t in plots.loss_curves([], [(5, 1.0)]).data] == ["validation loss"]


def _evals(classes: list[str]) -> list[dict]:
    return [
        {"step": step, "accuracy": acc, "f1_macro": acc - 0.1, **{f"f1/{c}": acc / 2 for c in classes}}
        for step, acc in ((100, 0.6), (200, 0.8))
    ]


def test_metric_curves_bold_main_lines_and_per_class_lines():
    fig = plots.metric_curves(_evals(["neg", "pos"]) + [{"step": 300, "accuracy": 0.85}])
    acc, macro = trace(fig, "accuracy"), trace(fig, "macro F1")
    assert (list(acc.x), list(acc.y)) == ([100, 200, 300], [0.6, 0.8, 0.85])
    assert list(macro.x) == [100, 200]  # a key missing from an eval leaves a gap, not a zero
    neg = trace(fig, "F1 neg")
    assert list(neg.y) == [0.3, 0.4] and neg.line.dash == "dot" and neg.line.width < acc.line.width
    assert all(t.visible is not False and t.visible != "legendonly" for t in fig.data)
    assert list(fig.layout.yaxis.range)[0] == 0 and 1 <= list(fig.layout.yaxis.range)[1] <= 1.05


def test_metric_curves_hide_per_class_lines_beyond_eight_classes():
    fig = plots.metric_curves(_evals([f"c{i}" for i in range(9)]))
    per_class = [t for t in fig.data if t.name.startswith("F1 c")]
    assert len(per_class) == 9 and all(t.visible == "legendonly" for t in per_class)
    assert fig.layout.legend.orientation == "v"  # 11 entries: a scrolling column, not rows piling into the title
    assert trace(fig, "accuracy").visible is not False and trace(fig, "accuracy").visible != "legendonly"


def test_lr_curve_uses_scientific_ticks():
    fig = plots.lr_curve([(0, 0.0), (10, 2e-5), (100, 1e-6)])
    assert list(fig.data[0].y) == [0.0, 2e-5, 1e-6] and "e" in fig.layout.yaxis.tickformat


def test_lr_find_curve_draws_the_steps_the_average_and_the_suggestion_on_a_log_axis():
    rates, losses = [1e-6, 1e-5, 1e-4, 1e-3], [0.7, 0.69, 0.5, 9.0]
    fig = plots.lr_find_curve(rates, losses, [0.7, 0.695, 0.62, 0.8], 1e-4, "suggested 1.0e-04 (steepest)")
    assert fig.layout.xaxis.type == "log"
    assert list(trace(fig, "loss (each step)").y) == losses and list(trace(fig, "smoothed").x) == rates
    assert list(trace(fig, "suggested 1.0e-04 (steepest)").x) == [1e-4, 1e-4]
    assert fig.layout.yaxis.range[1] < 9.0  # the diverged step does not flatten the curve
    assert "No range test yet" in annotations(plots.lr_find_curve([], [], []))


def test_confusion_matrix_2x2_counts_and_row_percentages():
    fig = plots.confusion_matrix([[8, 2], [1, 9]], ["neg", "pos"])
    heat = fig.data[0]
    assert [list(row) for row in heat.z] == [pytest.approx([0.8, 0.2]), pytest.approx([0.1, 0.9])]
    assert [list(row) for row in heat.text] == [["8<br>80%", "2<br>20%"], ["1<br>10%", "9<br>90%"]]
    assert list(heat.x) == list(heat.y) == ["neg", "pos"]
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 on top: the diagonal runs top left to bottom right
    assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "true"
    counts = plots.confusion_matrix([[8, 2], [1, 9]], ["neg", "pos"], normalize=False).data[0]
    assert [list(row) for row in counts.z] == [[8, 2], [1, 9]] and counts.text[0][1] == "2<br>20%"


def test_confusion_matrix_3x3_with_an_empty_row_and_numeric_names():
    fig = plots.confusion_matrix([[5, 0, 0], [1, 2, 1], [0, 0, 0]], ["0", "1", "2"])
    heat = fig.data[0]
    assert [list(row) for row in heat.z] == [[1, 0, 0], [0.25, 0.5, 0.25], [0, 0, 0]]  # no division by zero
    assert [list(row) for row in heat.text] == [
        ["5<br>100%", "0<br>0%", "0<br>0%"],
        ["1<br>25%", "2<br>50%", "1<br>25%"],
        ["0<br>0%", "0<br>0%", "0<br>0%"],
    ]
    assert list(heat.x) == ["0", "1", "2"] and fig.layout.xaxis.type == fig.layout.yaxis.type == "category"
    mismatch = plots.confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"])
    assert not mismatch.data and "3 x 3" in annotations(mismatch)[0]


def test_probabilities_sorted_cut_to_top_and_best_highlighted():
    probs = {f"class{i}": p for i, p in enumerate([0.01, 0.3, 0.05, 0.4, 0.02, 0.1, 0.12])}
    fig = plots.probabilities(probs, top=3)
    bars = fig.data[0]
    assert list(bars.y) == ["class3", "class1", "class6"] and list(bars.x) == [0.4, 0.3, 0.12]
    assert bars.marker.color[0] != bars.marker.color[1] == bars.marker.color[2]
    assert list(bars.text) == ["40.0%", "30.0%", "12.0%"]
    assert list(fig.layout.xaxis.range) == [0, 1] and fig.layout.yaxis.autorange == "reversed"
    assert "Top 3 of 7" in fig.layout.title.text
    assert len(plots.probabilities(probs).data[0].y) == 7  # fewer classes than top: all of them


def test_runs_overlay_one_line_per_run():
    fig = plots.runs_overlay({"run-a": [(1, 0.5), (2, 0.7)], "run-b": [(1, 0.4)], "run-c": []}, "accuracy")
    assert [t.name for t in fig.data] == ["run-a", "run-b"]  # a run without points draws nothing
    assert list(fig.data[0].y) == [0.5, 0.7] and fig.layout.yaxis.title.text == "accuracy"
    assert plots.runs_overlay({"x": [(0.5, 3.0)]}, "loss", x_label="epoch").layout.xaxis.title.text == "epoch"


PARETO_RUNS = [
    {"run": "A", "accuracy": 0.80, "peak_memory_mb": 1000, "method": "qlora", "train_seconds": 120.0},
    {"run": "B", "accuracy": 0.85, "peak_memory_mb": 2000, "method": "lora", "trainable_params": 1_234_567},
    {"run": "C", "accuracy": 0.85, "peak_memory_mb": 2000, "method": "ia3"},  # ties B: neither dominates
    {"run": "D", "accuracy": 0.79, "peak_memory_mb": 1500, "method": "lora"},  # worse and heavier than A
    {"run": "E", "accuracy": 0.78, "peak_memory_mb": 1000, "method": "qlora"},  # as light as A, less accurate
    {"run": "F", "accuracy": 0.85, "peak_memory_mb": 3000, "method": "full"},  # as accurate as B, heavier
    {"run": "G", "accuracy": 0.99, "peak_memory_mb": None, "method": "full"},  # no memory: skipped
    {"run": "H", "accuracy": 0.90, "peak_memory_mb": 4096, "method": "full"},
]


def test_pareto_front_holds_exactly_the_non_dominated_runs():
    assert [p["run"] for p in plots.pareto_front(PARETO_RUNS)] == ["A", "B", "C", "H"]
    assert plots.pareto_front([{"run": "x", "accuracy": None, "peak_memory_mb": 10}]) == []


def test_pareto_against_training_time_uses_its_own_front():
    runs = [{"run": "slow-best", "accuracy": 0.9, "train_seconds": 900, "peak_memory_mb": 100, "method": "full"},
            {"run": "fast", "accuracy": 0.8, "train_seconds": 60, "peak_memory_mb": 900, "method": "lora"},
            {"run": "slow-worse", "accuracy": 0.7, "train_seconds": 1200, "peak_memory_mb": 50, "method": "ia3"},
            ]  # fmt: skip
    assert [p["run"] for p in plots.pareto_front(runs, "train_seconds")] == ["fast", "slow-best"]
    assert [p["run"] for p in plots.pareto_front(runs)] == ["slow-worse", "slow-best"]
    fig = plots.pareto(runs, "train_seconds")
    assert fig.layout.title.text == "Accuracy vs training time" and fig.layout.xaxis.title.text == "training time (min)"
    front = next(t for t in fig.data if t.name == "Pareto front")
    assert list(front.x) == [1.0, 15.0] and list(front.text) == ["fast", "slow-best"]
    assert "No finished runs with accuracy and training time" in str(plots.pareto(runs[:0], "train_seconds").layout)


def test_runs_that_did_not_learn_are_marked_and_kept_off_the_front():
    """A collapsed run as light as anything and (by luck of the split) as accurate is shown, never a trade-off."""
    runs = [*PARETO_RUNS, {"run": "X", "accuracy": 0.95, "peak_memory_mb": 500, "method": "lora", "flag": "collapsed"}]
    fig = plots.pareto(runs)
    assert [p["run"] for p in plots.pareto_front([p for p in runs if not p.get("flag")])] == list(
        trace(fig, "Pareto front").text
    ) == ["A", "B", "C", "H"]  # fmt: skip
    marked = trace(fig, "did not learn (collapsed, 1)")
    assert list(marked.x) == [500 / 1024] and marked.marker.symbol == "x" and "flag: collapsed" in marked.hovertext[0]
    assert all("X" not in (t.hovertext or [""])[0] for t in fig.data if t.name == "lora")


def test_pareto_figure_colours_methods_and_labels_the_front():
    fig = plots.pareto(PARETO_RUNS)
    front = trace(fig, "Pareto front")
    assert list(front.text) == ["A", "B", "C", "H"] and front.line.shape == "hv"
    assert list(front.x) == pytest.approx([1000 / 1024, 2000 / 1024, 2000 / 1024, 4.0])  # GB past 2048 MB
    assert list(front.y) == [0.80, 0.85, 0.85, 0.90]
    methods = {t.name: t for t in fig.data if t.name != "Pareto front"}
    assert list(methods) == ["full", "lora", "qlora", "ia3"]
    assert methods["lora"].marker.color == plots.METHOD_COLORS["lora"]
    assert sorted(methods["full"].y) == [0.85, 0.90]  # G (no memory) is not drawn
    hover = " ".join(t for m in methods.values() for t in m.hovertext)
    assert "<b>G</b>" not in hover and "1,234,567" in hover and "120 s" in hover and "80.00%" in hover
    assert fig.layout.xaxis.title.text == "peak memory (GB)"
    small = plots.pareto([{"run": "s", "accuracy": 0.5, "peak_memory_mb": 300, "method": "my-method"}])
    assert small.layout.xaxis.title.text == "peak memory (MB)" and list(small.data[0].x) == [300]


def test_usage_history_percent_left_memory_right():
    gpu = [{"time": t, "gpu_util_pct": 50 + t, "gpu_mem_used_mb": 1000 + 100 * t} for t in range(5)]
    fig = plots.usage_history(gpu)
    util, mem = trace(fig, "GPU utilisation"), trace(fig, "GPU memory")
    assert list(util.y) == [50, 51, 52, 53, 54] and util.yaxis in (None, "y") and mem.yaxis == "y2"
    assert list(mem.y) == [1000, 1100, 1200, 1300, 1400] and fig.layout.yaxis2.side == "right"
    assert fig.layout.yaxis2.overlaying == "y" and list(fig.layout.yaxis.range)[0] == 0
    cpu = plots.usage_history([{"time": 0, "cpu_pct": 20, "ram_used_mb": 4096}, {"time": 2, "cpu_pct": 180}])
    assert [t.name for t in cpu.data] == ["CPU", "RAM"] and list(trace(cpu, "RAM").y) == [4.0]  # GB
    assert list(cpu.layout.yaxis.range)[1] >= 180  # multi-core CPU % is not cut off at 100


def test_usage_history_plots_the_run_process_ram_with_the_machine_as_context():
    samples = [{"time": t, "cpu_pct": 90, "ram_used_mb": 20480, "process_rss_mb": 600 + 10 * t} for t in range(3)]
    fig = plots.usage_history(samples)
    own, machine = trace(fig, "RAM of this run's process"), trace(fig, "RAM of the whole machine")
    assert list(own.y) == [600, 610, 620] and own.visible is True  # MB: the axis fits the process, not the machine
    assert machine.visible == "legendonly" and "(MB)" in fig.layout.yaxis2.title.text


def test_lr_curve_of_zeros_or_one_point_is_never_a_blank_axis():
    assert annotations(plots.lr_curve([(0, 0.0), (1, 0.0)]))[0].startswith("No learning rate above 0 logged yet")
    one = plots.lr_curve([(5, 1e-4)])
    assert one.data[0].mode == "markers" and list(one.data[0].y) == [1e-4]  # a single step still shows


EMPTY_CASES = {
    "label_distribution": (lambda: plots.label_distribution({}), "No data loaded yet"),
    "label_distribution_empty_splits": (lambda: plots.label_distribution({"train": {}}), "No data loaded yet"),
    "token_lengths": (lambda: plots.token_lengths([], 256), "No token lengths yet"),
    "memory_breakdown": (lambda: plots.memory_breakdown({}, 8000, "GPU"), "No memory estimate yet"),
    "loss_curves": (lambda: plots.loss_curves([], []), "No losses logged yet"),
    "metric_curves": (lambda: plots.metric_curves([]), "No evaluations yet"),
    "metric_curves_no_metrics": (lambda: plots.metric_curves([{"step": 1, "loss": 0.3}]), "No evaluations yet"),
    "lr_curve": (lambda: plots.lr_curve([]), "No learning rates logged yet"),
    "confusion_matrix": (lambda: plots.confusion_matrix([], []), "No confusion matrix yet"),
    "probabilities": (lambda: plots.probabilities({}), "No prediction yet"),
    "runs_overlay": (lambda: plots.runs_overlay({}, "accuracy"), "No accuracy curves to compare"),
    "pareto": (lambda: plots.pareto([]), "No finished runs with accuracy and peak memory yet"),
    "pareto_no_memory": (
        lambda: plots.pareto([{"run": "a", "accuracy": 0.9, "method": "lora"}]),
        "No finished runs with accuracy and peak memory yet",
    ),
    "usage_history": (lambda: plots.usage_history([]), "No hardware samples yet"),
    "empty": (lambda: plots.empty("Nothing here", height=200), "Nothing here"),
}


@pytest.mark.parametrize("case", list(EMPTY_CASES))
def test_empty_input_gives_a_message_not_an_error(case):
    make, message = EMPTY_CASES[case]
    fig = make()
    assert isinstance(fig, go.Figure) and len(fig.data) == 0
    assert annotations(fig) == [message]
    assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
    json.loads(fig.to_json())


TYPICAL = {
    "label_distribution": lambda: plots.label_distribution({"train": {"a": 1, "b": 2}}),
    "token_lengths": lambda: plots.token_lengths([5, 9, 300], 256),
    "memory_breakdown": lambda: plots.memory_breakdown({"weights": 300.0}, 16000.0, "GPU"),
    "loss_curves": lambda: plots.loss_curves([(1, 0.7)], [(1, 0.6)]),
    "metric_curves": lambda: plots.metric_curves(_evals(["a", "b"])),
    "lr_curve": lambda: plots.lr_curve([(0, 1e-4), (5, 5e-5)]),
    "confusion_matrix": lambda: plots.confusion_matrix([[1, 0], [0, 1]], ["a", "b"]),
    "probabilities": lambda: plots.probabilities({"a": 0.9, "b": 0.1}),
    "runs_overlay": lambda: plots.runs_overlay({"r": [(1, 0.1)]}, "f1_macro"),
    "pareto": lambda: plots.pareto(PARETO_RUNS),
    "usage_history": lambda: plots.usage_history([{"time": 0.0, "gpu_util_pct": 3.0, "gpu_mem_used_mb": 10.0}]),
}


@pytest.mark.parametrize("case", list(TYPICAL))
def test_typical_figures_serialise_with_the_shared_look(case):
    fig = TYPICAL[case]()
    assert fig.data and fig.layout.template.layout.paper_bgcolor == "white"  # plotly_white
    assert fig.layout.legend.orientation == "h"
    assert fig.layout.title.text  # every figure says what it shows
    assert json.loads(fig.to_json())["data"]


def test_plots_imports_nothing_heavy():
    # the UI imports plots lazily, but a page should still not pay for torch or pandas to draw a chart
    code = "import sys, studio.plots; assert not {'torch', 'gradio', 'pandas', 'numpy'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pareto_accuracy_axis_stays_within_0_and_100_percent():
    fig = plots.pareto([{"run": "only", "accuracy": 0.5, "peak_memory_mb": 873.5, "method": "lora"}])
    low, high = fig.layout.yaxis.range
    assert 0.0 <= low < 0.5 < high <= 1.01
    fig = plots.pareto([{"run": "a", "accuracy": 0.99, "peak_memory_mb": 10, "method": "lora"},
                        {"run": "b", "accuracy": 0.01, "peak_memory_mb": 20, "method": "full"}])  # fmt: skip
    assert tuple(fig.layout.yaxis.range) == (0.0, 1.01)


def test_pareto_cost_axis_gives_one_run_room_to_read():
    """One run (or runs of nearly one cost): +-10% around it, not autorange's 1 MB span with half-MB ticks."""
    fig = plots.pareto([{"run": "only", "accuracy": 0.81, "peak_memory_mb": 1487.0, "method": "full"}])
    assert fig.layout.xaxis.range == pytest.approx((1487 * 0.9, 1487 * 1.1))
    fig = plots.pareto([{"run": "a", "accuracy": 0.8, "peak_memory_mb": 100, "method": "lora"},
                        {"run": "b", "accuracy": 0.9, "peak_memory_mb": 900, "method": "full"}])  # fmt: skip
    low, high = fig.layout.xaxis.range
    assert low == 0.0 and high == pytest.approx(900 + 0.15 * 800)  # never below 0 MB


def test_live_curves_are_redrawn_within_their_share_of_the_time():
    from studio.plots import REDRAW_MAX_WAIT_S, REDRAW_SHARE, redraw_due

    assert redraw_due(None, 100.0, finished=False)  # the first draw
    last = {"at": 100.0, "cost": 0.05}  # a 50 ms redraw
    wait = 0.05 / REDRAW_SHARE
    assert wait < REDRAW_MAX_WAIT_S and 0.05 / wait == pytest.approx(REDRAW_SHARE)  # its share of the time
    assert not redraw_due(last, 100.0 + wait - 0.01, finished=False)
    assert redraw_due(last, 100.0 + wait, finished=False)
    assert redraw_due(last, 100.5, finished=True)  # the end of a run is drawn at once
    slow = {"at": 100.0, "cost": 5.0}  # never more than REDRAW_MAX_WAIT_S behind
    assert redraw_due(slow, 100.0 + REDRAW_MAX_WAIT_S, finished=False)
