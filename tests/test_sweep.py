"""Grids: expansion with stable ids, the shipped grid presets, running, resuming, failures, aggregation."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from studio.cli import main
from studio.config import RunConfig
from studio.errors import ConfigError
from studio.health import flag_from_scores
from studio.presets import GRIDS_DIR
from studio.registry import Registry, RunRecord
from studio.sweep import Grid, Sweep, aggregate, aggregate_runs

GRIDS = sorted(GRIDS_DIR.glob("*.yaml"))


def tiny_grid(model_dir, **axes) -> Grid:
    base = {"name": "tiny-grid", "data": {"source": "imdb-sample", "max_samples": 120, "max_length": 32},
            "model": {"name": str(model_dir)}, "method": {"name": "lora", "r": 4},
            "train": {"max_steps": 2, "batch_size": 8, "learning_rate": 1e-3, "eval_strategy": "no"}}  # fmt: skip
    return Grid.from_dict({"base": base, "axes": axes or {"method": {"lora": {"method.name": "lora"},
                                                                     "ia3": {"method.name": "ia3"}},
                                                          "seed": [42, 43]}})  # fmt: skip


@pytest.mark.parametrize("path", GRIDS, ids=[p.stem for p in GRIDS])
def test_every_grid_preset_expands_into_valid_distinct_runs(path):
    points = Grid.from_yaml(path).points()
    hashes = [p.config.config_hash() for p in points]
    assert len(set(hashes)) == len(points)  # every point is a different run
    assert hashes == [p.config.config_hash() for p in Grid.from_yaml(path).points()]  # and stable


def test_grid_sizes_of_the_studies():
    assert len(Grid.from_yaml("goemotions_grid").points()) == 5 * 4 * 3 * 2
    ablation = Grid.from_yaml("imdb_peft_ablation").points()
    assert len(ablation) == 42
    full = [p for p in ablation if p.labels["method"] == "full"]
    assert {p.config.method.name for p in full} == {"full"} and {p.config.train.learning_rate for p in full} == {1e-5}
    r64 = next(p for p in ablation if p.labels["method"] == "lora-attention-r64")
    assert (r64.config.method.r, r64.config.method.alpha, r64.config.method.placement) == (64, 128, "attention")
    ranks = [p.config.method.r for p in Grid.from_yaml("imdb_rank_sensitivity").points()]
    assert ranks == [1, 2, 4, 8, 16, 32, 64]


def test_expansion_order_labels_and_named_variants(tiny_model_dir):
    points = tiny_grid(tiny_model_dir("bert")).points()
    assert [p.key for p in points] == ["method=lora, seed=42", "method=lora, seed=43", "method=ia3, seed=42",
                                       "method=ia3, seed=43"]  # fmt: skip
    assert [(p.config.method.name, p.config.seed) for p in points] == [("lora", 42), ("lora", 43), ("ia3", 42),
                                                                       ("ia3", 43)]  # fmt: skip


@pytest.mark.parametrize(
    "axes, words",
    [
        ({"train.batch_size": [8, 0]}, r"train.batch_size: .*grid point \{'train.batch_size': 0\}"),
        ({"train.nope": [1]}, "unknown key"),
        ({"seed": []}, "axes.seed: needs a non-empty list"),
        ({"method": {"bad": "lora"}}, "axes.method.bad: a named value needs a mapping"),
    ],
)
def test_bad_grids_name_the_field(tiny_model_dir, axes, words):
    with pytest.raises(ConfigError, match=words):
        tiny_grid(tiny_model_dir("bert"), **axes)


def test_a_grid_without_axes_or_with_unknown_keys():
    with pytest.raises(ConfigError, match="needs `base`"):
        Grid.from_dict({"base": {}})
    with pytest.raises(ConfigError, match="unknown key"):
        Grid.from_dict({"base": {}, "axes": {"seed": [1]}, "runs": 3})


def test_a_2x2_grid_runs_resumes_and_aggregates(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    grid = tiny_grid(tiny_model_dir("bert"))
    events = []
    t0 = time.time()
    state = Sweep(grid, registry, on_event=lambda kind, data: events.append(kind)).execute()
    print(f"4-run tiny grid on CPU: {time.time() - t0:.1f} s")
    assert (state.done, state.skipped, state.failed, state.finished) == (4, 0, 0, True)
    assert events.count("start") == 4 and len(registry.list(status="completed")) == 4
    runs = {
        RunConfig.from_yaml(registry.run_dir(run_id) / "config.yaml").description for run_id in state.run_ids.values()
    }
    assert runs == {p.key for p in grid.points()}  # each run says which point it is
    # Resume: nothing left to run, nothing trained twice.
    again = Sweep(grid, registry).execute()
    assert (again.done, again.skipped) == (0, 4) and len(registry.list()) == 4
    rows = aggregate(grid, registry)
    assert [(r["method"], r["n"]) for r in rows] == [("lora", 2), ("ia3", 2)]
    assert all(r["flags"] == {} and r["note"] == "" for r in rows)  # tiny healthy runs are never flagged
    assert {registry.get(i).flag for i in state.run_ids.values()} == {""}  # checked, and learned
    lora = [registry.get(state.run_ids[i]).accuracy for i in (0, 1)]
    assert rows[0]["accuracy_mean"] == pytest.approx(statistics.mean(lora))
    assert rows[0]["accuracy_std"] == pytest.approx(statistics.stdev(lora))


def test_one_failed_run_does_not_stop_the_grid(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    grid = tiny_grid(tiny_model_dir("bert"), **{"data.text_column": ["body", "review"]})
    state = Sweep(grid, registry).execute()
    assert (state.failed, state.done) == (1, 1)
    assert [r.status for r in registry.list()] == ["completed"]  # bad input fails before writing anything


def test_stop_ends_the_grid_after_the_current_run(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    sweep = Sweep(tiny_grid(tiny_model_dir("bert")), registry)
    sweep.on_event = lambda kind, data: sweep.stop() if kind == "start" else None
    state = sweep.execute()
    assert state.done + state.failed == 1 and len(registry.list()) == 1


def test_aggregate_on_a_synthetic_registry(runs_dir):
    registry = Registry(runs_dir)
    grid = Grid.from_dict({"base": {"name": "synthetic"}, "axes": {"method.r": [4, 8], "seed": [1, 2, 3]}})
    accuracies = {(4, 1): 0.80, (4, 2): 0.82, (4, 3): 0.84, (8, 1): 0.90, (8, 2): 0.70}  # (8, 3) never ran
    for p in grid.points():
        acc = accuracies.get((p.config.method.r, p.config.seed))
        if acc is not None:
            record = registry.create(p.config)
            (registry.run_dir(record.id) / "eval.json").write_text("{}")  # finished (the marker a run writes last)
            registry.update(record.id, status="completed", accuracy=acc, peak_memory_mb=1000 + p.config.method.r)
    rows = {r["method.r"]: r for r in aggregate(grid, registry)}
    assert rows[4]["n"] == 3 and rows[4]["accuracy_mean"] == pytest.approx(0.82)
    assert rows[4]["accuracy_std"] == pytest.approx(0.02)
    assert rows[8]["n"] == 2 and rows[8]["accuracy_mean"] == pytest.approx(0.80)
    assert rows[8]["peak_memory_mb_mean"] == 1008 and rows[8]["train_seconds_mean"] is None


def test_runs_that_did_not_learn_are_left_out_of_the_means_and_counted(runs_dir):
    registry = Registry(runs_dir)
    grid = Grid.from_dict({"base": {"name": "synthetic"}, "axes": {"method.r": [4, 8], "seed": [1, 2]}})
    flags = {(4, 2): "collapsed", (8, 1): "diverged", (8, 2): "collapsed"}
    for p in grid.points():
        record = registry.create(p.config)
        (registry.run_dir(record.id) / "eval.json").write_text("{}")
        flag = flags.get((p.config.method.r, p.config.seed), "")
        registry.update(record.id, status="completed", accuracy=0.5 if flag else 0.9, flag=flag)
    rows = {r["method.r"]: r for r in aggregate(grid, registry)}
    assert (rows[4]["n"], rows[4]["runs"], rows[4]["accuracy_mean"]) == (1, 2, 0.9)  # never averaged in
    assert rows[4]["note"] == "mean of 1 of 2 seeds; 1 collapsed" and list(rows[4]["flags"].values()) == ["collapsed"]
    assert rows[8]["n"] == 0 and rows[8]["accuracy_mean"] is None
    assert rows[8]["note"] == "no mean: 1 diverged, 1 collapsed of 2 seeds"
    assert rows[4]["run_ids"][0] not in rows[4]["flags"]  # the run that learned comes first (its curves are drawn)


GOEMOTIONS_RESULTS = Path(__file__).parents[1] / "benchmarks" / "results" / "goemotions_real"


def goemotions_real_records() -> dict[str, RunRecord]:
    """The GoEmotions study's first completed runs (H100, 2026-11-23), as registry rows (config hash -> row) from
    their runs CSV, recorded before the health check existed (flag NULL)."""
    import dataclasses

    import pandas as pd

    runs = pd.read_csv(GOEMOTIONS_RESULTS / "runs-2026-11-23-h100.csv")
    names = [f.name for f in dataclasses.fields(RunRecord)]
    records: dict[str, RunRecord] = {}
    for row in runs[runs["status"] == "completed"].to_dict("records"):
        unknown = {"name": "goemotions-real", "created": 0.0, "finished": None, "pid": None, "host": None,
                   "message": None, "flag": None}  # fmt: skip
        values = {n: row.get(n) for n in names} | unknown
        records.setdefault(row["config_hash"], RunRecord(**values))
    return records


def test_the_goemotions_studys_collapsed_runs_are_left_out_of_its_means():
    """The committed study (recorded before the check) holds four completed MiniLM LoRA runs of seed 43 (lr
    1e-3) that predict a single class: accuracy 1/k and macro-F1 2/(k(k+1)). runs.csv has no predictions, so
    they are found by the rule on test scores (`health.flag_from_scores`); its report averaged them in
    ("MiniLM LoRA 2 x 1600: 0.70 ± 0.28"). The fifth such run was stopped (no mean counts it), and the MiniLM
    full run at 0.2375 (16 labels x 800) predicts several classes (macro-F1 0.15): low, not collapsed."""
    rows = [
        r
        for r in aggregate_runs(Grid.from_yaml("goemotions_real"), goemotions_real_records())
        if r["setup"] != "MiniLM LoRA lr 3e-4"
    ]  # added to the grid after this run (issue 20)
    flagged = {(r["setup"], r["data.balance.num_labels"], r["data.balance.num_samples"]): r for r in rows if r["flags"]}
    assert sorted(flagged) == [("MiniLM LoRA", 2, 1600), ("MiniLM LoRA", 2, 2400), ("MiniLM LoRA", 4, 2400),
                               ("MiniLM LoRA", 16, 2400)]  # fmt: skip
    for row in flagged.values():
        assert row["n"] == 1 and row["note"] == "mean of 1 of 2 seeds; 1 collapsed" and row["accuracy_std"] == 0.0
    assert flagged[("MiniLM LoRA", 2, 1600)]["accuracy_mean"] == pytest.approx(0.9)  # the seed that learned
    assert flagged[("MiniLM LoRA", 4, 2400)]["accuracy_mean"] == pytest.approx(0.775)
    assert sum(r["n"] for r in rows) == 96 - 4 and all(r["runs"] == 2 for r in rows)


def test_cli_sweep_dry_run_lists_runs_with_memory(capsys):
    assert main(["sweep", "imdb_rank_sensitivity", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "imdb-rank-sensitivity: 7 runs" in out and "method=r64" in out and "GB" in out
    assert main(["sweep", "no_such_grid", "--dry-run"]) == 2


def test_cli_sweep_runs_a_grid_file(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    base = RunConfig.from_dict({"name": "cli-grid", "data": {"source": "imdb-sample", "max_samples": 120,
                                "max_length": 32}, "model": {"name": str(tiny_model_dir("bert"))},
                                "train": {"max_steps": 2, "batch_size": 8, "eval_strategy": "no"}})  # fmt: skip
    import yaml

    path.write_text(yaml.safe_dump({"name": "cli-grid", "base": base.to_dict(), "axes": {"seed": [1, 2]}}))
    assert main(["--runs-dir", str(tmp_path / "runs"), "sweep", str(path)]) == 0
    out = capsys.readouterr().out
    assert "run 2/2: seed=2" in out and "2 run, 0 skipped" in out
    assert main(["--runs-dir", str(tmp_path / "runs"), "sweep", str(path)]) == 0
    assert "0 run, 2 skipped" in capsys.readouterr().out
    # a grid swept with overrides (e.g. a local weights folder on a GPU box) is reported with the same ones
    runs = ["--runs-dir", str(tmp_path / "runs")]
    assert main([*runs, "sweep", str(path), "--set", "train.learning_rate=0.002"]) == 0
    assert "2 run, 0 skipped" in capsys.readouterr().out
    out = tmp_path / "report"
    assert main([*runs, "report", str(path), "--set", "train.learning_rate=0.002", "--out", str(out)]) == 0
    assert len((out / "runs.csv").read_text().splitlines()) == 1 + 2  # of the 4 runs, the 2 with the override


def test_efficiency_is_each_method_as_a_share_of_full_fine_tuning_of_its_model():
    from studio import study_plots

    def row(model, method, value, acc, mb, secs, params):
        config = RunConfig.from_dict({"model": {"name": model}, "method": {"name": method}})
        return {"setup": value, "config": config, "accuracy_mean": acc, "peak_memory_mb_mean": mb,
                "train_seconds_mean": secs, "trainable_params_mean": params}  # fmt: skip

    rows = [row("a", "full", "a full", 0.80, 1000, 100, 1_000_000),
            row("a", "lora", "a lora", 0.84, 500, 150, 10_000),
            row("b", "full", "b full", 0.90, 4000, 400, 4_000_000),
            row("b", "qlora", "b qlora", 0.90, 1000, 800, 40_000),
            row("c", "ia3", "c ia3", 0.70, 100, 10, 100)]  # c has no full FT to compare with: left out  # fmt: skip
    fig = study_plots.efficiency(rows, "setup")
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars == {"a lora": pytest.approx([0.01, 0.5, 1.5, 1.05]), "b qlora": pytest.approx([0.01, 0.25, 2.0, 1.0])}
    assert fig.layout.yaxis.type == "log"
    # decades from below the smallest bar to above the tallest, so each bar's label shows (log10 units)
    assert fig.layout.yaxis.range == pytest.approx((-2.35, 0.651), abs=1e-3) and fig.layout.yaxis.dtick == 1
    assert study_plots.efficiency(rows[-1:], "setup").layout.annotations  # nothing to compare: a message


def test_heatmap_cells_are_the_means():
    from studio import study_plots

    rows = [{"model.name": m, "data.balance.num_labels": k, "data.balance.num_samples": n, "n": 2,
             "accuracy_mean": 1 / k + n / 10_000, "accuracy_std": 0.01}
            for m in ("a", "b") for k in (2, 4) for n in (800, 1600)]  # fmt: skip
    fig = study_plots.accuracy_heatmap(rows, "data.balance.num_samples", "data.balance.num_labels", "model.name")
    assert len(fig.data) == 2  # one panel per model
    assert fig.data[0].z[0][1] == pytest.approx(0.5 + 0.16) and fig.data[0].y == ("2", "4")
    assert "±1.0%" in fig.data[0].text[0][0]
    assert study_plots.accuracy_heatmap([], "x", "y").layout.annotations  # empty: a message, no error
    rows[0] |= {"n": 1, "accuracy_std": 0.0, "note": "mean of 1 of 2 seeds; 1 collapsed"}
    rows[1] |= {"n": 0, "accuracy_mean": None, "flags": {"r1": "collapsed", "r2": "collapsed"},
                "note": "no mean: 2 collapsed of 2 seeds"}  # fmt: skip
    axes = ("data.balance.num_samples", "data.balance.num_labels", "model.name")
    text = study_plots.accuracy_heatmap(rows, *axes).data[0].text  # model a's panel
    assert text[0][0] == "58.0%<br>mean of 1 of 2 seeds<br>1 collapsed"  # the cell says what the mean left out
    assert text[0][1] == "no mean: 2 collapsed of 2 seeds"


# ---- one process per run (several GPUs, or several runs at a time) ---------------------------------------
def test_device_slots_spread_runs_over_gpus_and_name_bad_input(monkeypatch):
    from studio import hardware
    from studio.sweep import device_slots

    assert device_slots("0,1") == ["0", "1"]
    assert device_slots("0,1", workers=2) == ["0", "1", "0", "1"]  # the GPUs fill before doubling up
    assert device_slots("none") is None and device_slots("none", workers=2) == [None, None]
    assert device_slots("3") == ["3"]  # a GPU named: its own process, pinned to it
    monkeypatch.setattr(hardware, "detect", lambda: hardware.Device("cuda", "H200", 141_000, 140_000, count=2))
    assert device_slots("auto") == ["0", "1"]  # several GPUs: one run per GPU without being asked
    monkeypatch.setattr(hardware, "detect", lambda: hardware.Device("cuda", "H100", 80_000, 79_000, count=1))
    assert device_slots("auto") is None  # one GPU: one run at a time in this process
    with pytest.raises(ConfigError, match="gpus: takes GPU indices"):
        device_slots("first,second")
    with pytest.raises(ConfigError, match="workers: must be at least 1"):
        device_slots("auto", workers=0)


@pytest.mark.slow  # two training processes at once
def test_runs_in_separate_processes_at_once_with_a_failure_and_resume(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    grid = tiny_grid(tiny_model_dir("bert"), **{"data.text_column": ["review", "body"], "seed": [1, 2]})
    events = []
    t0 = time.time()
    state = Sweep(grid, registry, slots=["0", "1"], on_event=lambda kind, data: events.append((kind, data))).execute()
    ends = [data for kind, data in events if kind == "end"]
    print(f"4-run tiny grid, 2 processes at a time on CPU: {time.time() - t0:.1f} s")
    assert (state.done, state.failed, state.finished, state.running) == (2, 2, True, {})
    assert sorted(r.status for r in registry.list()) == ["completed", "completed", "failed", "failed"]
    assert len(state.run_ids) == 4 and not list((runs_dir / ".launch").iterdir())
    # the bad column fails before training, in the child: its row and log say why, as an in-process run's would
    failed = [e for e in ends if e["status"] == "failed"]
    assert len(failed) == 2 and all(e["message"].startswith("data.text_column: ") for e in failed)
    for e in failed:
        assert registry.get(e["run_id"]).message == e["message"]
        assert f"done: {e['message']}" in (registry.run_dir(e["run_id"]) / "log.txt").read_text()
    runs = registry.list(status="completed")
    # each run was its own process, pinned to one GPU, and two trained at the same time
    pinned = {registry.summary(r.id).reproducibility.device.get("visible_devices") for r in runs}
    assert pinned and pinned <= {"0", "1"}
    assert len({r.pid for r in runs}) == 2
    assert [kind for kind, _ in events[:2]] == ["start", "start"]  # the second began before the first ended
    again = Sweep(grid, registry).execute()  # resume: the completed ones are skipped, the bad ones fail again
    assert (again.done, again.skipped, again.failed) == (0, 2, 2)


def test_method_bars_average_the_cells_of_other_axes():
    from studio import study_plots

    rows = [{"setup": s, "data.balance.num_labels": k, "n": 2, "accuracy_mean": acc, "accuracy_std": 0.02}
            for s, k, acc in (("a", 2, 0.9), ("a", 16, 0.5), ("b", 2, 0.8), ("b", 16, 0.3))]  # fmt: skip
    fig = study_plots.method_comparison(rows, "setup", None)
    assert list(fig.data[0].x) == ["a", "b"] and list(fig.data[0].y) == pytest.approx([0.7, 0.55])
    assert "mean over the 2 cells" in fig.layout.title.text


def test_the_real_grids_runs_keep_their_identity_across_config_formats():
    """The 96 runs of goemotions_real were recorded under config format 1 (H100), its MiniLM half again later
    (H200, with a third MiniLM setup); its points must still hash to them (its inline base takes the grid's
    `version: 1`, so speed is as_set), or `sweep` would rerun all."""
    import pandas as pd

    from studio.sweep import Grid

    first, again = (pd.read_csv(GOEMOTIONS_RESULTS / f) for f in ("runs-2026-11-23-h100.csv", "runs.csv"))
    done = {h for runs in (first, again) for h in runs.loc[runs["status"] == "completed", "config_hash"]}
    points = Grid.from_yaml("goemotions_real").points()
    assert len(points) == 120 and all(p.config.config_hash() in done for p in points)
    assert {p.config.train.speed for p in points} == {"as_set"}


def test_the_re_run_goemotions_report_records_its_collapses_and_they_are_the_first_runs_cells():
    """Issue 20: the MiniLM half re-run on the H200 recorded its health flags; the seed-43 LoRA runs at 1e-3
    collapsed in the same 4 cells as on the H100, and nothing else was flagged."""
    import pandas as pd

    from studio.sweep import Grid

    again = pd.read_csv(GOEMOTIONS_RESULTS / "runs.csv").fillna({"flag": ""})
    labels = {p.config.config_hash(): p.labels for p in Grid.from_yaml("goemotions_real").points()}
    cells = sorted((labels[h]["setup"], labels[h]["data.balance.num_labels"], labels[h]["data.balance.num_samples"])
                   for h in again.loc[again["flag"] == "collapsed", "config_hash"])  # fmt: skip
    assert len(again) == 72 and set(again["flag"]) == {"", "collapsed"}
    first = {k: r for k, r in goemotions_real_records().items() if flag_from_scores(r.accuracy, r.f1_macro,
             labels[k]["data.balance.num_labels"])}  # fmt: skip
    assert cells == sorted((labels[k]["setup"], labels[k]["data.balance.num_labels"],
                            labels[k]["data.balance.num_samples"]) for k in first)  # fmt: skip
