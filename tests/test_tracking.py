"""MLflow tracking (studio/tracking.py) against a real MLflow server that the tests start on this machine: a tiny
run's parameters, metric history, test results, plots and model read back through MlflowClient; a resumed run
continuing its MLflow run; a server that cannot be reached leaving a warning and the run completing.

The server is the full `mlflow` package (the studio itself needs only the client, mlflow-skinny): the tests
take its `mlflow` command from STUDIO_MLFLOW_SERVER, else from .mlflow-server/ (the virtual environment
.ci/run makes), else from this environment when it has the full package; without one they are skipped.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from test_training import tiny_config

from studio import tracking
from studio.events import TrainLog
from studio.registry import Registry
from studio.tracking import (
    LINK_FILE,
    RUN_ID_TAG,
    MlflowLink,
    flat_params,
    metric_key,
    numbers,
    tracker_for,
    without_login,
)
from studio.training import Run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow-skinny not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command() -> list[str] | None:
    named = os.environ.get("STUDIO_MLFLOW_SERVER")
    if named:
        return [named]
    if (ROOT / ".mlflow-server" / "bin" / "mlflow").is_file():
        return [str(ROOT / ".mlflow-server" / "bin" / "mlflow")]
    if importlib.util.find_spec("mlflow.server") and importlib.util.find_spec("sqlalchemy"):
        return [sys.executable, "-m", "mlflow"]
    return None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URL of an MLflow server (SQLite store, artifacts proxied to a folder) for this session; stopped after."""
    command = server_command()
    if command is None:
        pytest.skip("no MLflow server here: pip install mlflow in a virtual environment, set STUDIO_MLFLOW_SERVER")
    folder, port = tmp_path_factory.mktemp("mlflow"), free_port()
    out = open(folder / "server.log", "w")  # noqa: SIM115 - the server writes it until the session ends
    server = subprocess.Popen(
        [*command, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "art")],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner: one process less
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # its first start on a busy machine migrates the database: slow
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the MLflow server did not start"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            server.wait(5)  # its data is the test's: no need to wait for a graceful end
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        out.close()


@pytest.mark.slow  # the server takes 15-60 s to start on 2 busy cores
def test_a_run_logs_params_metrics_results_plots_and_model(mlflow_server, tiny_model_dir, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "studio-tests")
    registry = Registry(tmp_path / "runs")
    config = tiny_config(tiny_model_dir("bert"), "lora", max_steps=8, eval_strategy="steps", eval_steps=4)
    result = Run(config, registry).execute()
    assert result.status == "completed", result.message
    run_dir = registry.run_dir(result.run_id)

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("studio-tests")
    (found,) = client.search_runs([experiment.experiment_id], f"tags.`{RUN_ID_TAG}` = '{result.run_id}'")
    assert found.info.run_name == result.run_id and found.info.status == "FINISHED"
    assert MlflowLink.read(run_dir) == MlflowLink(mlflow_server, experiment.experiment_id, found.info.run_id)
    params = found.data.params
    assert params["run_id"] == result.run_id and params["method"] == "lora" and params["model"] == config.model.name
    assert params["train.learning_rate"] == "0.001" and params["train.max_steps"] == "8" and params["method.r"] == "4"

    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert len(history) >= 4 and [m.step for m in history] == sorted(m.step for m in history)
    assert [m.step for m in client.get_metric_history(found.info.run_id, "eval/accuracy")] == [4, 8]
    summary = registry.summary(result.run_id)
    assert found.data.metrics["test/accuracy"] == pytest.approx(summary.test.accuracy)
    assert found.data.metrics["efficiency/trainable_params"] == summary.efficiency.trainable_params
    assert found.data.metrics.get("memory/measured_mb") == pytest.approx(summary.memory.measured_mb)

    def files(path: str = "") -> set[str]:
        out = set()
        for item in client.list_artifacts(found.info.run_id, path):
            out |= files(item.path) if item.is_dir else {item.path}
        return out

    logged = files()
    assert {"results/eval.json", "results/config.yaml", "results/log.txt", "plots/report.html"} <= logged
    if shutil.which("chromium") or shutil.which("google-chrome"):  # plotly's PNG exporter needs a Chrome
        assert {"plots/02-loss.png", "plots/04-test-confusion-matrix.png"} <= logged
    assert {"model/label_map.json", "model/config.yaml", "model/adapter/adapter_model.safetensors"} <= logged
    assert any(p.startswith("model/tokenizer/") for p in logged) and "results/predictions.parquet" in logged
    assert not any(p.startswith(("model/predictions", "model/metrics", "model/eval")) for p in logged)
    assert "logging to run" in (run_dir / "log.txt").read_text()

    # a resumed run (same id and folder) continues that MLflow run rather than starting another
    monkeypatch.setattr(tracking.Tracker, "_plots", lambda *args: False)  # drawn above: this checks the run
    notes: list[str] = []
    resumed = config.with_overrides(["train.mlflow=without_model"])
    tracker = tracker_for(resumed, result.run_id, run_dir, lambda e: notes.append(getattr(e, "message", "")))
    tracker.observe(TrainLog(9, 1.0, {"loss": 0.25}))
    tracker.finish("completed", summary, registry)
    assert tracker.failed is None and tracker.link.run_id == found.info.run_id
    assert any("continuing run" in n for n in notes)
    (again,) = client.search_runs([experiment.experiment_id], f"tags.`{RUN_ID_TAG}` = '{result.run_id}'")
    assert again.info.run_id == found.info.run_id and again.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train/loss")][-1] == 9


def test_an_unreachable_server_leaves_a_warning_and_the_run_completes(tiny_model_dir, tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url.replace("//", "//studio:SECRETpassword0005@"))
    registry = Registry(tmp_path / "runs")
    result = Run(tiny_config(tiny_model_dir("bert"), "lora", max_steps=4), registry).execute()
    assert result.status == "completed", result.message
    run_dir = registry.run_dir(result.run_id)
    text = (run_dir / "log.txt").read_text()
    assert f"warning: MLflow tracking at {url} stopped (ConnectionError: the tracking server cannot be reached" in text
    assert "this run goes on and logs locally only" in text and not (run_dir / LINK_FILE).exists()
    assert (run_dir / "adapter").is_dir() and registry.summary(result.run_id).test.accuracy is not None
    assert not any(b"SECRETpassword0005" in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())


def test_tracking_off_or_unset_logs_nothing(tiny_model_dir, tmp_path, monkeypatch):
    config = tiny_config(tiny_model_dir("bert"), "lora")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracker_for(config, "r", tmp_path, print) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    off = config.with_overrides(["train.mlflow=off"])
    assert tracker_for(off, "r", tmp_path, print) is None
    assert off.config_hash() == config.config_hash()  # where a run is tracked is not what it trains


def test_params_and_metric_names():
    params = flat_params(tiny_config("some/model", "lora", report_to=["tensorboard"]), "20260101-x")
    assert params["data.max_samples"] == "240" and params["train.report_to"] == '["tensorboard"]'
    assert params["data.balance"] == "null" and params["model"] == "some/model" and params["run_id"] == "20260101-x"
    found = numbers("test", {"accuracy": 0.5, "n": 3, "ok": True, "cm": [[1]], "per_class": {"a b": {"f1": 1}},
                             "nan": float("nan"), "none": None})  # fmt: skip
    assert found == {"test/accuracy": 0.5, "test/n": 3.0, "test/per_class/a b/f1": 1.0}
    assert metric_key("f1/très:bien") == "f1/très_bien" and metric_key("f1/../x") == "f1/_/x"
    assert metric_key("f1/") == "f1/_" and metric_key("a b/c.d") == "a b/c.d"
    assert without_login("https://me:pw@mlflow.example.org:5000/x") == "https://mlflow.example.org:5000/x"
    assert without_login("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert without_login("databricks") == "databricks"


def test_a_server_gone_mid_run_ends_the_wait_at_the_next_check(tmp_path, monkeypatch):
    """MLflow's client retries a call for minutes; a finishing run asks the server's health every CHECK_S and
    stops waiting, with the warning, once it does not answer."""
    monkeypatch.setattr(tracking, "CHECK_S", 0.2)
    notes: list[str] = []
    tracker = tracking.Tracker(f"http://127.0.0.1:{free_port()}", "r", tmp_path, lambda e: notes.append(e.message))
    release = threading.Event()
    tracker._calls.put(lambda: release.wait(60))  # a call stuck in the client's retries
    tracker._thread.start()
    t0 = time.monotonic()
    tracker.finish("completed", None, Registry(tmp_path / "runs"))
    release.set()
    assert time.monotonic() - t0 < 10 and tracker.failed == "the tracking server stopped answering"
    assert notes == [f"warning: MLflow tracking at {tracker.uri} stopped (the tracking server stopped answering): "
                     "this run goes on and logs locally only"]  # fmt: skip
