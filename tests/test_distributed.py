"""One run across several processes (torchrun DDP), checked on the CPU with gloo (STUDIO_DDP_ON_CPU=1): the
launch the studio does itself (`train --gpus N`, the Train tab's "GPUs for this run"), rank 0 alone writing,
evaluation gathered across ranks, the effective batch kept, a stop reaching every rank, QLoRA per rank; the
launch itself (the command, the parent-chosen run id, failures) is in tests/test_launch.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio.config import RunConfig
from studio.distributed import layout
from studio.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def test_layout_keeps_the_effective_batch():
    assert layout(16, 2, 2) == (16, 1, None)  # the accumulation is divided first: each device keeps its batch
    assert layout(16, 1, 2) == (8, 1, None)  # else the per-device batch
    assert layout(16, 4, 1) == (16, 4, None)
    batch, accum, note = layout(5, 3, 2)  # neither divides: the effective batch grows, and the note says so
    assert (batch, accum) == (5, 3) and "effective batch 15" in note and "30 on 2 GPUs" in note


def test_more_gpus_than_visible_are_refused_in_the_app_and_the_cli(monkeypatch, tmp_path):
    from studio import distributed
    from studio.errors import StudioError
    from studio.jobs import Jobs

    monkeypatch.setattr(distributed, "gpu_count", lambda: 1)
    with pytest.raises(StudioError, match="GPUs for this run: 2 GPUs asked, this machine has 1; ask for at most 1"):
        Jobs(Registry(tmp_path / "runs")).start(RunConfig.from_dict({"data": {"source": "imdb-sample"}}), gpus=2)
    distributed.require_gpus(1, "train --gpus")  # one is always fine


def studio(runs: Path, *args: str, cpu_processes: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDIO_DDP_ON_CPU": "1" if cpu_processes else "0"}
    return subprocess.run([sys.executable, "-m", "studio", "--runs-dir", str(runs), *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=ROOT)  # fmt: skip


def preset(folder: Path, model_dir: Path, method: str = "lora", **train) -> Path:
    config = RunConfig.from_dict({
        "name": f"ddp-{method}",
        "data": {"source": "imdb-sample", "max_samples": 240, "max_length": 32},
        "model": {"name": str(model_dir)},
        "method": {"name": method, "r": 4},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 2, "learning_rate": 1e-3, "logging_steps": 2, **train},
    })  # fmt: skip
    path = folder / f"{config.name}-{len(list(folder.glob('*.yaml')))}.yaml"
    config.to_yaml(path)
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_model_dir):
    """One config trained in one process (8 x accumulation 2) and in two (8 each x 1)."""
    root = tmp_path_factory.mktemp("ddp")
    path = preset(root, tiny_model_dir("bert"))
    runs = root / "runs"
    single = studio(runs, "train", str(path), "--quiet")
    assert single.returncode == 0, single.stderr[-3000:]
    double = studio(runs, "train", str(path), "--quiet", "--gpus", "2")
    assert double.returncode == 0, double.stderr[-3000:]
    registry = Registry(runs)
    ids = [r.id for r in registry.list()]  # newest first
    return registry, ids[1], ids[0], double.stdout


@pytest.mark.slow  # two training processes (torchrun, gloo)
def test_two_processes_train_one_run_as_one_process_would(pair):
    registry, single, double, stdout = pair
    assert len(registry.list(status="completed")) == 2  # rank 1 created no row of its own
    assert stdout.count("completed") == 1 and "on 2 processes" in stdout  # rank 0 alone prints
    assert f"torchrun -m studio --runs-dir {registry.runs_dir} train " in stdout and f"--run-id {double}" in stdout
    a, b = (registry.summary(r).to_dict() for r in (single, double))
    assert a["distributed"] == {"processes": 1, "per_device_batch": 8, "grad_accum": 2, "effective_batch": 16}
    assert b["distributed"] == {"processes": 2, "per_device_batch": 8, "grad_accum": 1, "effective_batch": 16}
    assert a["efficiency"]["steps"] == b["efficiency"]["steps"] == 12  # 192 rows / 16
    # Evaluation gathered from both ranks: every test row once, in order, scored as the one process scored it
    # (the same 16 rows make each step; only dropout masks and the order of the sums differ).
    pa, pb = (pd.read_parquet(registry.run_dir(r) / "predictions.parquet") for r in (single, double))
    assert len(pb) == len(pa) == 48 and (pa["text"] == pb["text"]).all() and (pa["label"] == pb["label"]).all()
    np.testing.assert_allclose(np.stack(pb["probs"]), np.stack(pa["probs"]), atol=2e-3)
    assert b["test"]["n"] == 24 and sum(map(sum, b["test"]["confusion_matrix"])) == 24
    # The losses are means over the batch, on one process with accumulation as on two: the untrained binary
    # head starts at ln 2 (the Trainer had logged 2 ln 2 for both, scaling by the steps or the processes).
    for run_id in (single, double):
        events = [json.loads(line) for line in (registry.run_dir(run_id) / "metrics.jsonl").read_text().splitlines()]
        first = next(e["loss"] for e in events if e["kind"] == "log" and "loss" in e)
        evaluated = [e["loss"] for e in events if e["kind"] == "eval" and "split" not in e]
        assert first == pytest.approx(np.log(2), abs=0.05) and evaluated[0] == pytest.approx(np.log(2), abs=0.05)
    kinds = [e["kind"] for e in events]
    assert kinds.count("done") == 1 and kinds.count("data") == 1  # one writer
    assert any("2 processes (GPUs) x batch 8 x accumulation 1: effective batch 16" in e.get("message", "")
               for e in events)  # fmt: skip
    folder = registry.run_dir(double)
    assert (folder / "adapter").is_dir() and not (folder / "checkpoints").exists()


@pytest.mark.slow  # two training processes (torchrun, gloo)
def test_qlora_across_two_processes_stops_on_every_rank(tmp_path, tiny_model_dir):
    path = preset(tmp_path, tiny_model_dir("bert"), "qlora", optimizer="paged_adamw_8bit", max_steps=400,
                  batch_size=4, logging_steps=1)  # fmt: skip
    runs = tmp_path / "runs"
    env = {**os.environ, "STUDIO_DDP_ON_CPU": "1"}
    command = [sys.executable, "-m", "studio", "--runs-dir", str(runs), "train", str(path), "--gpus", "2", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    registry = Registry(runs)
    deadline = time.time() + 240
    run_id = None
    while time.time() < deadline and proc.poll() is None:
        records = registry.list(status="running") if runs.exists() else []
        if records:
            run_id = records[0].id
            log = (registry.run_dir(run_id) / "metrics.jsonl").read_text()
            if '"kind": "log"' in log:  # trained a step or more
                break
        time.sleep(0.5)
    assert run_id, proc.communicate()[0][-3000:]
    stop = studio(runs, "stop", run_id)
    assert stop.returncode == 0 and "stop requested" in stop.stdout
    output = proc.communicate(timeout=240)[0]
    assert proc.returncode == 0, output[-3000:]
    record = registry.get(run_id)
    assert record.status == "stopped", record.message
    summary = registry.summary(run_id)
    assert 0 < summary.efficiency.steps < 400 and summary.test.n == 24
    assert "4-bit" in record.method and not (registry.run_dir(run_id) / "STOP").exists()
    again = studio(runs, "stop", run_id)  # a finished run: nothing to stop, said plainly
    assert again.returncode == 2 and "not training" in again.stderr


@pytest.mark.slow  # two training processes (accelerate launch)
def test_accelerate_launch_runs_the_same_command(tmp_path, tiny_model_dir):
    """`accelerate launch -m studio train ...` as a user types it (a CPU config standing in for 2 GPUs)."""
    import socket

    with socket.socket() as s:  # a free port: accelerate's default 29500 may still be closing from another run
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nmixed_precision: 'no'\n"
                      "num_machines: 1\nnum_processes: 2\nmachine_rank: 0\nuse_cpu: true\n")  # fmt: skip
    runs = tmp_path / "runs"
    path = preset(tmp_path, tiny_model_dir("bert"))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--main_process_port",
               str(port), "-m", "studio", "--runs-dir", str(runs), "train", str(path), "--quiet"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    (record,) = Registry(runs).list()
    assert record.status == "completed" and Registry(runs).summary(record.id).distributed.processes == 2


@pytest.mark.slow  # two training processes, twice
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_model_dir):
    """SIGKILL every process of a 2-process run after its checkpoint at step 20; `torchrun ... -m studio resume`
    continues it (each rank's random state restored) to exactly the probabilities of a run never killed."""
    import signal

    import psutil

    # 60 steps left after the kill's checkpoint: the test sees it within 0.1 s, long before the run could end (400
    # steps made the resumed and the uninterrupted runs each train 320 steps more, ~20 s each on 2 cores).
    path = preset(tmp_path, tiny_model_dir("bert"), epochs=20, max_steps=80, batch_size=4, logging_steps=50,
                  checkpoint_steps=10, load_best_at_end=False)  # fmt: skip
    runs = tmp_path / "runs"
    env = {**os.environ, "STUDIO_DDP_ON_CPU": "1"}
    command = [sys.executable, "-m", "studio", "--runs-dir", str(runs), "train", str(path), "--gpus", "2", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    deadline = time.time() + 240
    while time.time() < deadline and not list(runs.glob("*/checkpoints/checkpoint-20/trainer_state.json")):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.1)
    for child in psutil.Process(proc.pid).children(recursive=True):  # torchrun and both ranks
        child.send_signal(signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    registry = Registry(runs)
    for _ in range(100):  # until the killed rank 0 is reaped (its pid is the row's)
        (record,) = registry.list()
        if record.status == "interrupted":
            break
        time.sleep(0.1)
    assert record.status == "interrupted"
    resume = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "studio",
              "--runs-dir", str(runs), "resume", record.id, "--quiet"]  # fmt: skip
    out = subprocess.run(resume, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0 and "resuming from checkpoint-" in out.stdout, out.stderr[-3000:]
    assert registry.get(record.id).status == "completed"
    whole = tmp_path / "whole"
    assert studio(whole, "train", str(path), "--gpus", "2", "--quiet").returncode == 0
    resumed, uninterrupted = (pd.read_parquet(Registry(r).run_dir(Registry(r).list()[0].id) / "predictions.parquet")
                              for r in (runs, whole))  # fmt: skip
    np.testing.assert_allclose(np.stack(resumed["probs"]), np.stack(uninterrupted["probs"]), atol=1e-6)


def test_more_gpus_than_the_machine_has_is_refused(tmp_path, tiny_model_dir):
    out = studio(tmp_path / "runs", "train", str(preset(tmp_path, tiny_model_dir("bert"))), "--gpus", "2",
                 cpu_processes=False)  # fmt: skip
    assert out.returncode == 2 and "train --gpus: this machine has no GPU" in out.stderr
    assert not (tmp_path / "runs").exists() or not Registry(tmp_path / "runs").list()


def test_bad_data_is_refused_once_before_the_processes_start(tmp_path, tiny_model_dir):
    path = preset(tmp_path, tiny_model_dir("bert"))
    out = studio(tmp_path / "runs", "train", str(path), "--gpus", "2", "--set", "data.text_column=body")
    assert out.returncode == 2 and out.stderr.count("error: ") == 1 and "body" in out.stderr
    assert "launching" not in out.stdout and "ChildFailedError" not in out.stderr


@pytest.mark.slow  # a live app launching two training processes
def test_train_tab_runs_one_run_on_two_processes_and_streams_it(tmp_path, tiny_model_dir, monkeypatch):
    """The Train tab's "GPUs for this run" (offered here because STUDIO_DDP_ON_CPU=1 stands in for 2 GPUs):
    Start launches torchrun with 2 processes (`launch.ChildRun`), and the page follows that run's events like any."""
    from gradio_client import Client
    from test_ui_live import form, tick_until, tiny_preset

    from studio.ui import build_app

    monkeypatch.setenv("STUDIO_DDP_ON_CPU", "1")
    app = build_app(tmp_path / "runs", preset=tiny_preset(tmp_path, tiny_model_dir("bert")))
    app.queue().launch(prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        args = form(app, "start", train__max_steps=6)
        fn = next(f for f in app.fns.values() if f.api_name == "start")
        index = next(i for i, c in enumerate(fn.inputs) if c.elem_id == "gpus")
        assert fn.inputs[index].visible and fn.inputs[index].choices[-1] == ("2 GPUs", 2)
        args[f"param_{index}"] = 2
        client.predict(api_name="/start", **args)
        out = tick_until(client, lambda o: "completed" in o[0] or "failed" in o[0], timeout=240)
        assert "completed" in out[0], out[0]
        assert "**2 GPUs:** batch 4 per GPU x accumulation 1 = effective batch 8" in out[6]
        assert (
            "Test accuracy" in out[6] and "2 processes (GPUs) x batch 4 x accumulation 1: effective batch 8" in out[5]
        )  # results; the log pane
        record = app.studio.registry.list()[0]
        assert record.status == "completed" and len(app.studio.registry.list()) == 1
        assert app.studio.registry.summary(record.id).distributed.processes == 2
        app.studio.jobs.current().run.wait(60)  # the launcher exits after rank 0 recorded the end
        assert not app.studio.jobs.current().alive()
        assert not list((tmp_path / "runs" / ".launch").glob("*.yaml"))  # the launch's config file is gone
        # Bad data on 2 GPUs: refused before the processes start, the reason on the page and in a failed row.
        args = form(app, "start", data__text_column="body")
        args[f"param_{index}"] = 2
        client.predict(api_name="/start", **args)
        out = tick_until(client, lambda o: "failed" in o[0], timeout=120)
        failed = app.studio.registry.list()[0]
        assert "body" in out[0] and len(app.studio.registry.list()) == 2
        assert failed.status == "failed" and "body" in failed.message
        assert app.studio.form.words(failed.message) in out[0]  # the page names the field by its label
    finally:
        app.close()
