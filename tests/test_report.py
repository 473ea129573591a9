"""A study's report: report.html (self-contained), report.md and runs.csv for chosen runs or a grid, with the
tables, each run's figures, the training time in all, and PNGs where an exporter works (or the reason why not).
"""

from __future__ import annotations

import csv
import shutil

import pytest
from test_sweep import tiny_grid
from test_training import tiny_config

from studio import report
from studio.errors import RunNotFoundError
from studio.registry import Registry
from studio.report import RUN_COLUMNS, write_report
from studio.sweep import Grid, Sweep, aggregate
from studio.training import Run

PLOTLY_JS = "plotly.js v"
"""Where the embedded plotly.js library begins (it is written once, so the page opens offline)."""


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> tuple[Registry, list[str]]:
    """Two finished tiny runs (seeds 1 and 2, validated every step) and a failed one, newest last."""
    registry = Registry(tmp_path_factory.mktemp("report") / "runs")
    base = tiny_config(tiny_model_dir("bert"), max_steps=2, eval_strategy="steps", eval_steps=1)
    ids = []
    for seed in (1, 2):
        result = Run(base.with_overrides([f"seed={seed}"]), registry).execute()
        assert result.status == "completed", result.message
        ids.append(result.run_id)
    failed = registry.create(base.with_overrides(["seed=3"]))
    registry.finish(failed.id, "failed", "data.text_column: 'body' not found", None)
    return registry, [*ids, failed.id]


def test_a_runs_report_has_each_runs_seed_study_figures(runs, tmp_path):
    registry, ids = runs
    paths = write_report(registry, tmp_path / "runs-report", run_ids=ids[:2], images=False)
    assert set(paths) == {"csv", "md", "html"}
    page = paths["html"].read_text()
    for run_id in ids[:2]:
        for title in ("Loss", "Validation metrics", "Test confusion matrix", "Labels per split"):
            assert f"<h2>{run_id}: {title}</h2>" in page
    assert "<h2>Validation accuracy by epoch</h2>" in page and not (tmp_path / "runs-report" / "figures").exists()
    assert page.count(PLOTLY_JS) == 1  # embedded once for all the figures


def test_the_tables_list_every_run_finished_or_not(runs, tmp_path):
    registry, ids = runs
    paths = write_report(registry, tmp_path / "out", run_ids=ids, images=False)
    with open(paths["csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(RUN_COLUMNS)
    assert [(r["id"], r["status"]) for r in rows] == [(ids[0], "completed"), (ids[1], "completed"), (ids[2], "failed")]
    first = registry.get(ids[0])
    assert float(rows[0]["accuracy"]) == first.accuracy and rows[0]["seed"] == "1" and rows[2]["accuracy"] == ""
    md = paths["md"].read_text()
    assert md.startswith("# Runs\n\n3 runs\n") and f"from {registry.runs_dir}" in md
    assert "2 runs trained for" in md  # the failed run trained for no time
    assert "Aggregated over seeds" not in md  # chosen runs are listed, not aggregated
    header = "| " + " | ".join(RUN_COLUMNS) + " |"
    table = md[md.index(header) :].splitlines()
    assert len([line for line in table if line.startswith("| 2")]) == 3  # a row per run id
    # a number under 10 keeps 4 decimals, a larger one none (thousands separated): 0.5417, 1,680
    assert f"| {first.accuracy:.4f} |" in table[2] and f"| {first.peak_memory_mb:,.0f} |" in table[2]
    page = paths["html"].read_text()
    assert "<h1>Runs</h1>" in page and "<th>config_hash</th>" in page and all(f"<td>{i}</td>" in page for i in ids)


def test_the_training_time_counts_runs_that_shared_the_device(tiny_model_dir, runs_dir, tmp_path):
    """Rows as a grid of processes leaves them: each run's training seconds and when it started and ended."""
    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert"))
    spans = {"a": (1000.0, 1100.0), "b": (1050.0, 1150.0), "c": (1200.0, 1260.0)}  # a and b overlap
    ids = {}
    for name, (start, end) in spans.items():
        ids[name] = registry.create(config).id
        registry.update(ids[name], status="completed", created=start, finished=end, train_seconds=60.0)
    md = write_report(registry, tmp_path / "all", run_ids=list(ids.values()), images=False)["md"].read_text()
    assert "3 runs trained for 3.0 min in all (60 s a run on average); up to 2 runs trained at the same time, " \
           "sharing the device, so a run's time includes that." in md  # fmt: skip
    md = write_report(registry, tmp_path / "apart", run_ids=[ids["a"], ids["c"]], images=False)["md"].read_text()
    assert "2 runs trained for 2.0 min in all (60 s a run on average)." in md and "same time" not in md
    md = write_report(registry, tmp_path / "none", run_ids=[], images=False)["md"].read_text()
    assert "0 runs" in md and "No run has finished training yet." in md


def test_when_no_png_can_be_made_the_report_says_why(runs, tmp_path, monkeypatch):
    import plotly.io

    def no_browser(*args, **kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.\nInstall it with ...")

    monkeypatch.setattr(plotly.io, "write_images", no_browser)
    registry, ids = runs
    paths = write_report(registry, tmp_path / "out", run_ids=ids[:1])
    reason = ("No PNGs: the image export failed (RuntimeError: Kaleido requires Google Chrome to be installed.); "
              "pip install kaleido, and Chrome.")  # fmt: skip
    assert reason in paths["md"].read_text() and reason in paths["html"].read_text()
    assert not [k for k in paths if k.startswith("png:")] and not list((tmp_path / "out" / "figures").iterdir())
    assert f"<h2>{ids[0]}: Loss</h2>" in paths["html"].read_text()  # the page has its figures all the same


def test_only_the_first_runs_get_figures_of_their_own(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "MAX_RUN_FIGURES", 1)
    registry, ids = runs
    page = write_report(registry, tmp_path / "out", run_ids=ids[:2], images=False)["html"].read_text()
    assert f"<h2>{ids[0]}: Loss</h2>" in page and f"{ids[1]}: Loss" not in page
    assert f"<td>{ids[1]}</td>" in page  # still in the table


def test_an_unknown_run_is_refused_before_anything_is_written(runs, tmp_path):
    registry, ids = runs
    with pytest.raises(RunNotFoundError, match="no run 'missing'"):
        write_report(registry, tmp_path / "out", run_ids=[ids[0], "missing"])
    assert not list((tmp_path / "out").iterdir())


# ---- grids ---------------------------------------------------------------------------------------------
def test_report_and_study_plots_from_a_tiny_grid(tiny_model_dir, runs_dir, tmp_path):
    from studio import study_plots

    registry = Registry(runs_dir)
    grid = tiny_grid(tiny_model_dir("bert"), method={"lora": {"method.name": "lora"}, "ia3": {"method.name": "ia3"}},
                     seed=[1, 2])  # fmt: skip
    Sweep(grid, registry).execute()
    rows = aggregate(grid, registry)
    fig = study_plots.method_comparison(rows, "method", None)
    assert [list(t.x) for t in fig.data] == [["lora", "ia3"]]
    assert [round(v, 6) for v in fig.data[0].y] == [round(r["accuracy_mean"], 6) for r in rows]
    ranked = study_plots.rank_sensitivity([{**r, "method.r": r["config"].method.r} for r in rows])
    assert ranked.data  # builds from real rows
    paths = write_report(registry, tmp_path / "report", grid=grid)
    page = paths["html"].read_text()
    assert "Aggregated over seeds" in page and "Accuracy vs peak memory" in page and "Methods compared" in page
    assert page.count("<script") >= 1 and "plotly" in page  # self-contained: plotly.js inlined
    md = paths["md"].read_text()
    assert "| method | n | accuracy |" in md and "| lora | 2 |" in md
    assert len(paths["csv"].read_text().splitlines()) == 1 + 4
    assert "did not learn" not in md  # tiny healthy runs: nothing flagged, nothing left out
    # one run found not learning: left out of its mean, counted in the cell, marked in the runs table
    flagged = rows[0]["run_ids"][1]
    registry.update(flagged, flag="collapsed")
    md = write_report(registry, tmp_path / "flagged", grid=grid, images=False)["md"].read_text()
    assert "| lora | 1 (mean of 1 of 2 seeds; 1 collapsed) |" in md
    assert "1 run(s) did not learn (1 collapsed" in md and f"| {flagged} | completed | collapsed |" in md


def test_the_goemotions_table_without_its_collapsed_runs():
    """The study's first aggregated table, regenerated offline from its runs CSV: the four collapsed runs
    are out of the means and each of their cells says so (test_sweep.py has the rule that finds them)."""
    from test_sweep import goemotions_real_records

    from studio.sweep import aggregate_runs

    grid = Grid.from_yaml("goemotions_real")
    rows = aggregate_runs(grid, goemotions_real_records())
    header, table = report.aggregate_table(rows, list(grid.axes))
    lines = {" | ".join(cells[:3]): cells for cells in table}
    assert header[:4] == ["setup", "data.balance.num_labels", "data.balance.num_samples", "n"]
    assert lines["MiniLM LoRA | 2 | 1600"][3:5] == ["1 (mean of 1 of 2 seeds; 1 collapsed)", "0.9000"]
    assert lines["MiniLM LoRA | 2 | 800"][3] == "2"  # both seeds learned


@pytest.mark.slow  # renders six PNGs in a headless Chromium (kaleido)
def test_a_grid_report_has_every_figure_as_html_and_png(tiny_model_dir, runs_dir, tmp_path):
    """A setup axis (model and method together) with label-count and sample-size axes: all figures."""
    from studio import study_plots

    registry = Registry(runs_dir)
    setups = {"full": {"method.name": "full"}, "lora": {"method.name": "lora"}}
    base = {"name": "tiny-study", "data": {"source": "goemotions", "multi_label": "drop", "max_length": 32,
            "balance": {"num_labels": 2, "num_samples": 80}}, "model": {"name": str(tiny_model_dir("bert"))},
            "train": {"epochs": 2, "batch_size": 16, "eval_strategy": "epoch", "learning_rate": 1e-3}}  # fmt: skip
    grid = Grid.from_dict({"base": base, "axes": {"setup": setups, "data.balance.num_labels": [2, 3],
                                                  "data.balance.num_samples": [80]}})  # fmt: skip
    Sweep(grid, registry).execute()
    rows = aggregate(grid, registry)
    figures = study_plots.study_figures(list(grid.axes), rows, registry.list(), registry)
    assert list(figures) == ["heatmap", "methods", "efficiency", "pareto_memory", "pareto_time", "curves"]
    assert [a.text for a in figures["heatmap"].layout.annotations][:2] == ["full", "lora"]  # a panel per setup
    assert {t.name for t in figures["curves"].data} == {"full", "lora"}
    assert figures["curves"].layout.title.text == "Validation accuracy by epoch (80 samples, 3 labels)"
    assert [t.name for t in figures["efficiency"].data] == ["lora"]
    # a method has one colour on every chart (the Pareto plots', the bars', the curves')
    lora = study_plots.method_color("lora")
    assert figures["efficiency"].data[0].marker.color == lora
    assert {t.name: t.line.color for t in figures["curves"].data} == {"full": study_plots.method_color("full"),
                                                                       "lora": lora}  # fmt: skip
    assert {t.name: t.marker.color for t in figures["pareto_memory"].data}.get("lora") == lora
    assert list(figures["methods"].data[0].marker.color) == [study_plots.method_color("full"), lora]
    paths = write_report(registry, tmp_path / "report", grid=grid)
    page, md = paths["html"].read_text(), paths["md"].read_text()
    for title in ("Efficiency vs full fine-tuning", "Accuracy vs training time", "Validation accuracy by epoch"):
        assert f"<h2>{title}</h2>" in page
    assert "4 runs trained for" in md
    pngs = [v for k, v in paths.items() if k.startswith("png:")]
    if shutil.which("chromium") or shutil.which("google-chrome"):  # kaleido renders in the machine's browser
        assert len(pngs) == 6 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
        assert "![Accuracy by labels x samples](figures/01-heatmap.png)" in md
    else:
        assert "No PNGs" in md
