"""The UI layer stays light (no torch at import) and reads the registry."""

from __future__ import annotations

import subprocess
import sys

from studio.config import RunConfig
from studio.registry import Registry
from studio.ui import build_app, runs_table


def test_ui_and_engine_config_import_no_heavy_libraries():
    code = (
        "import sys, studio.ui, studio.config, studio.registry, studio.training, studio.cli; "
        "heavy = {'torch', 'transformers', 'peft', 'bitsandbytes', 'datasets'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_never_imports_gradio():
    code = (
        "import sys, studio.config, studio.data, studio.models, studio.training, studio.phases, studio.inference, "
        "studio.cli; assert 'gradio' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runs_table_and_app_build(runs_dir):
    registry = Registry(runs_dir)
    record = registry.create(RunConfig())
    registry.update(record.id, status="completed", accuracy=0.81234, train_seconds=12.34)
    rows = runs_table(runs_dir)
    assert rows[0][:2] == [record.id, "completed"] and rows[0][5] == 0.8123
    assert build_app(runs_dir) is not None
