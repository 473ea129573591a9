"""The UI layer: light imports, a form bound to the config tree, launch settings. (Live app: test_ui_live.py.)"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from studio.config import RunConfig
from studio.errors import ConfigError
from studio.presets import PRESETS_DIR
from studio.registry import Registry
from studio.ui import build_app, launch_options
from studio.ui.form import get_path
from studio.ui.model_tab import command_for
from studio.ui.runs_tab import COLUMNS, runs_table
from studio.ui.session import Session

PRESETS = sorted(PRESETS_DIR.glob("*.yaml"))


def test_ui_and_engine_config_import_no_heavy_libraries():
    code = (
        "import sys, studio.ui, studio.config, studio.registry, studio.training, studio.cli, studio.jobs; "
        "from studio.ui import data_tab, model_tab, train_tab, runs_tab, playground_tab; "
        "heavy = {'torch', 'transformers', 'peft', 'bitsandbytes', 'datasets'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_never_imports_gradio():
    code = (
        "import sys, studio.config, studio.data, studio.models, studio.training, studio.recipe, studio.inference, "
        "studio.cli, studio.jobs, studio.runlog, studio.dataview, studio.plots; assert 'gradio' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return build_app(tmp_path_factory.mktemp("runs"))


def form_values(session: Session, config: RunConfig) -> dict:
    return session.form.values(config)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_survives_the_form(app, preset):
    """Shown in the form and read back, a preset is the same config: no field is lost or bent."""
    session: Session = app.studio
    config = RunConfig.from_yaml(preset)
    values = form_values(session, config)
    assert session.form.read(config.to_dict(), values) == config
    # Every bound field comes from the form, not from the base: a form over the defaults gives the preset's values.
    from_defaults = session.form.read(RunConfig().to_dict(), values).to_dict()
    for b in session.form.bindings:
        assert get_path(from_defaults, b.path) == get_path(config.to_dict(), b.path), b.path


def test_form_binds_the_knobs_of_every_section(app):
    paths = {b.path for b in app.studio.form.bindings}
    must = {"data.source", "data.text_column", "data.label_column", "data.splits", "data.split_ratios", "data.balance",
            "data.max_length", "model.name", "method.name", "method.bits", "method.quant_type", "method.double_quant",
            "method.compute_dtype", "method.r", "method.alpha", "method.dropout", "method.placement",
            "method.target_modules", "train.epochs", "train.batch_size", "train.grad_accum", "train.learning_rate",
            "train.scheduler", "train.warmup_ratio", "train.weight_decay", "train.optimizer", "train.precision",
            "train.gradient_checkpointing", "train.early_stopping_patience", "name", "seed", "train.speed",
            "train.half_activations", "train.expandable_segments", "data.validation_source", "data.test_source",
            "data.header", "data.delimiter", "data.label_file", "data.merge_label_case",
            "data.drop_duplicates"}  # fmt: skip
    assert must <= paths, must - paths
    dropdowns = {b.path: b.components[0] for b in app.studio.form.bindings}
    assert [c[1] for c in dropdowns["train.optimizer"].choices][:2] == ["adamw_torch", "adamw_torch_fused"]


def test_a_page_first_shows_the_preset_the_app_starts_from(tmp_path):
    """Every component starts at the preset's value, those of a field of several components too (a balanced
    subset's checkbox and numbers; a separate test file's path and columns): a page sent back as it loaded reads
    back the preset."""
    test_source = "data.test_source={source: held.csv, label_column: stars, split: dev}"
    separate = RunConfig.from_yaml(PRESETS_DIR / "smollm2_goemotions.yaml").with_overrides(
        ["data.balance=null", test_source, "data.header=false", "data.delimiter=;"]
    )
    separate.to_yaml(tmp_path / "separate.yaml")
    for path in (PRESETS_DIR / "smollm2_goemotions.yaml", tmp_path / "separate.yaml"):
        session: Session = build_app(tmp_path / "runs", preset=path).studio
        preset = RunConfig.from_yaml(path)
        shown = {c: c.value for c in session.form.components}
        assert shown == session.form.values(preset), path.name
        assert session.form.read(None, shown) == preset, path.name


def test_the_app_never_runs_remote_code(app):
    """trust_remote_code only from the CLI: a base config that has it (a run the CLI trained, say) is refused."""
    session: Session = app.studio
    values = form_values(session, RunConfig())
    base = RunConfig.from_dict({"model": {"name": "some/hub-model", "trust_remote_code": True}}).to_dict()
    with pytest.raises(ConfigError, match="model.trust_remote_code.*python -m studio train"):
        session.form.read(base, values)
    assert "model.trust_remote_code" not in {b.path for b in session.form.bindings}  # no control for it in the page


def test_form_bad_values_name_their_field(app):
    session: Session = app.studio
    comps = {b.path: b.components for b in session.form.bindings}
    values = form_values(session, RunConfig())
    for path, value, words in [
        ("data.split_ratios", "0.8, 0.1", "data.split_ratios: needs 3 values"),
        ("data.split_ratios", "0.8, x, 0.1", "data.split_ratios: '0.8, x, 0.1' is not a list of numbers"),
        ("train.learning_rate", 0, "train.learning_rate"),
        ("train.batch_size", None, "train.batch_size"),
        ("data.source", "  ", "data.source"),
    ]:
        bad = {**values, comps[path][0]: value}
        with pytest.raises(ConfigError, match=words):
            session.form.read(None, bad)
    k, n = comps["data.balance"][1:]
    on = {**values, comps["data.balance"][0]: True, k: 4, n: 2}
    with pytest.raises(ConfigError, match="data.balance.num_samples"):
        session.form.read(None, on)
    assert session.form.read(None, {**on, n: 1600}).data.balance.per_label == 400


def test_cli_command_reproduces_the_form(app):
    config = RunConfig.from_yaml(PRESETS_DIR / "quick_demo.yaml").with_overrides(
        ["train.epochs=2", "method.name=lora", "method.target_modules=[query, key]", "method.placement=custom"]
    )
    command = command_for(config, "quick_demo")
    assert command.startswith("python -m studio train quick_demo")
    tokens = shlex.split(command.replace("\\\n", " "))
    sets = [tokens[i + 1] for i, token in enumerate(tokens) if token == "--set"]
    assert len(sets) == 4
    assert RunConfig.from_yaml(PRESETS_DIR / "quick_demo.yaml").with_overrides(sets) == config
    assert "save the form" in command_for(config, None)


def test_runs_table_lists_the_registry(app, runs_dir):
    registry = Registry(runs_dir)
    record = registry.create(RunConfig())
    (registry.run_dir(record.id) / "eval.json").write_text("{}")  # finished, with a damaged eval.json
    registry.update(record.id, status="completed", accuracy=0.81234, train_seconds=12.34)
    session = Session.create(runs_dir)
    rows = runs_table(session)
    row = dict(zip(COLUMNS, rows[0], strict=True))  # one value per column, each under its own header
    assert rows[0][:3] == [record.id, "completed", ""] and row["accuracy"] == "81.2%" and row["task"] == ""  # no model
    registry.update(record.id, flag="collapsed")
    assert dict(zip(COLUMNS, runs_table(session)[0], strict=True))["flag"] == "collapsed"
    assert row["train time"] == "12 s" and row["estimate error"] == ""  # no readable results: no estimate error


def test_launch_options_login_from_the_environment():
    assert "auth" not in launch_options({})
    assert launch_options({"STUDIO_USERNAME": "ana", "STUDIO_PASSWORD": "s3cret"})["auth"] == ("ana", "s3cret")
    with pytest.raises(SystemExit, match="both"):
        launch_options({"STUDIO_USERNAME": "ana"})


def test_uploads_have_a_size_limit_from_the_environment():
    assert launch_options({})["max_file_size"] == "500mb"
    assert launch_options({"STUDIO_MAX_UPLOAD_MB": "20"})["max_file_size"] == "20mb"
    with pytest.raises(SystemExit, match="STUDIO_MAX_UPLOAD_MB"):
        launch_options({"STUDIO_MAX_UPLOAD_MB": "lots"})


def test_uploads_are_kept_outside_gradios_temporary_cache(tmp_path):
    session = Session.create(tmp_path / "runs")
    upload = tmp_path / "gradio-tmp" / "reviews.csv"
    upload.parent.mkdir()
    upload.write_text("text,label\nfine,1\n")
    kept = session.keep_upload(upload)
    assert kept.parent == session.uploads_dir and kept.read_text() == upload.read_text()
    assert session.keep_upload(upload) == kept  # same content: one copy
    upload.unlink()
    assert Path(kept).is_file()


def test_app_builds_with_a_preset_file(tmp_path):
    path = tmp_path / "mine.yaml"
    RunConfig(name="mine").to_yaml(path)
    app = build_app(tmp_path / "runs", preset=path)
    assert isinstance(app, gr.Blocks) and app.studio.preset_name is None
    assert app.studio.form.initial["name"] == "mine"


def test_the_ui_cost_benchmark_polls_like_the_train_tab():
    """benchmarks/ui_cost.py mirrors the tab's timer without importing gradio (absent on the GPU machine)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import ui_cost

    from studio.ui import train_tab

    assert (ui_cost.TICK_S, ui_cost.USAGE_SAMPLES, ui_cost.HARDWARE_EVERY) == (
        train_tab.TICK_S,
        train_tab.USAGE_SAMPLES,
        train_tab.HARDWARE_EVERY,
    )
