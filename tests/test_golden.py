"""Golden runs: the same config gives the same test metrics and every test probability (within 1e-6) as the
committed record, so a change to the engine's structure cannot change what it trains.

Two runs, each through the CLI in a fresh process: the quick demo (the real MiniLM) at a small size, and a
tiny QLoRA BERT that evaluates between training steps. The processes compute on one thread with CPU-portable
kernels (MKL's conditional numerical reproducibility, ATen's default capability) so the record holds on every
CPU of the machine kind, not only on the one that wrote it.

Rewrite the record (only when a change is meant to change the numbers, and say so in the commit):
    python tests/test_golden.py --write
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORD = Path(__file__).parent / "assets" / "golden"
PORTABLE = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

CASES = {
    "quick_demo_small": (
        "quick_demo",
        ["data.max_samples=400", "data.max_length=64", "train.max_steps=8", "train.eval_steps=4",
         "train.logging_steps=2"],
    ),
    "tiny_qlora": (
        None,  # a preset written from the tiny BERT below
        ["train.max_steps=6", "train.eval_strategy=steps", "train.eval_steps=3"],
    ),
}  # fmt: skip


def _tiny_qlora_preset(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_tiny_model

    from studio.config import RunConfig

    model = make_tiny_model("bert", folder / "tiny-bert")
    config = RunConfig.from_dict({
        "name": "golden-qlora", "seed": 7,
        "data": {"source": "imdb-sample", "max_samples": 240, "max_length": 32},
        "model": {"name": str(model)},
        "method": {"name": "qlora", "r": 4},
        "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 2},
    })  # fmt: skip
    path = folder / "golden-qlora.yaml"
    config.to_yaml(path)
    return path


def start_case(name: str, folder: Path) -> tuple[subprocess.Popen, Path]:
    """Start training the case in a fresh portable process (one thread: the two cases run side by side)."""
    preset, overrides = CASES[name]
    preset = preset or str(_tiny_qlora_preset(folder))
    runs = folder / "runs"
    argv = [sys.executable, "-m", "studio", "--runs-dir", str(runs), "train", preset, "--quiet"]
    for o in overrides:
        argv += ["--set", o]
    env = {**os.environ, **PORTABLE, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    log = (folder / "out.txt").open("w")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True), runs


def finish_case(process: subprocess.Popen, runs: Path) -> dict:
    """The case's test metrics and test probabilities, once its process has ended."""
    code = process.wait(timeout=900)
    assert code == 0, (runs.parent / "out.txt").read_text()[-4000:]
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and (p / "eval.json").is_file()]
    test = json.loads((run_dir / "eval.json").read_text())["test"]
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    preds = preds[preds["split"] == "test"]
    metrics = {k: v for k, v in test.items() if isinstance(v, (int, float)) and not k.startswith("eval_")}
    return {"metrics": metrics, "labels": preds["label"].tolist(), "probs": np.stack(preds["probs"]).tolist()}


def run_cases(names: list[str], folder: Path) -> dict[str, dict]:
    started = {}
    for name in names:
        (folder / name).mkdir(parents=True)
        started[name] = start_case(name, folder / name)
    return {name: finish_case(*started[name]) for name in names}


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> dict[str, dict]:
    return run_cases(list(CASES), tmp_path_factory.mktemp("golden"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_a_config_trains_to_its_recorded_probabilities(name, golden):
    want, got = json.loads((RECORD / f"{name}.json").read_text()), golden[name]
    assert got["labels"] == want["labels"]
    np.testing.assert_allclose(np.array(got["probs"]), np.array(want["probs"]), rtol=0, atol=1e-6)
    for key, value in want["metrics"].items():
        assert got["metrics"][key] == pytest.approx(value, abs=1e-6), key


if __name__ == "__main__" and sys.argv[1:2] == ["--write"]:
    sys.path.insert(0, str(ROOT))
    RECORD.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        results = run_cases(sys.argv[2:] or list(CASES), Path(tmp))
    for case, got in results.items():
        rows = ",\n  ".join(json.dumps(row) for row in got["probs"])
        text = f'{{"metrics": {json.dumps(got["metrics"])},\n "labels": {json.dumps(got["labels"])},\n'
        (RECORD / f"{case}.json").write_text(text + f' "probs": [\n  {rows}\n ]}}\n')
        print("wrote", RECORD / f"{case}.json")
