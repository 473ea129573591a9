"""Grids on a Ray cluster (studio/ray_sweep.py): a local cluster started here on loopback (a head that trains
nothing and two worker nodes of one CPU slot each, standing in for two GPUs), a worker killed mid-run (the run
resumes from its checkpoint on a retry, under its own id: none lost, none duplicated), and the bad input of
`sweep --ray`."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter

import pytest
from bench_modules import load

from studio.cli import main
from studio.errors import StudioError
from studio.registry import Registry
from studio.sweep import Grid, Sweep

ray = pytest.importorskip("ray")
from studio.ray_sweep import RayPlacement, task_options, train_point  # noqa: E402


def killable_grid(model_dir, seeds=(1, 2, 3, 4)) -> Grid:
    """Tiny runs with a checkpoint every 3 steps, long enough to be killed between two."""
    base = {"name": "ray-grid", "data": {"source": "imdb-sample", "max_samples": 120, "max_length": 32},
            "model": {"name": str(model_dir)}, "method": {"name": "lora", "r": 4},
            "train": {"max_steps": 12, "batch_size": 8, "learning_rate": 1e-3, "eval_strategy": "no",
                      "logging_steps": 3, "checkpoint_steps": 3}}  # fmt: skip
    return Grid.from_dict({"base": base, "axes": {"seed": list(seeds)}})


@pytest.fixture(scope="module")
def cluster():
    """A head (no CPU slot: it runs no training) and two worker nodes of one slot each, all on this machine."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


@pytest.mark.slow
def test_a_grid_on_two_workers_survives_a_killed_worker(cluster, tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    grid = killable_grid(tiny_model_dir("bert"))
    events: list[tuple[str, dict]] = []
    sweep = Sweep(grid, registry, on_event=lambda kind, data: events.append((kind, data)),
                  ray=RayPlacement(cluster.address, workers=1, max_retries=2))  # fmt: skip
    killed: list[dict] = []
    stop = threading.Event()
    kill = load("ray_sweep").killer  # the benchmark's killer; never after the last checkpoint (12)
    killer = threading.Thread(target=kill, args=(registry, killed, stop, "checkpoint-12"), daemon=True)
    killer.start()
    try:
        state = sweep.execute()
    finally:
        stop.set()
        killer.join()
    assert killed, "no run was killed: the runs ended before any had a checkpoint"
    assert (state.done, state.failed, state.skipped) == (4, 0, 0)
    assert state.slots == 2  # two worker nodes of one slot each; the head trains nothing
    records = registry.list()
    assert len(records) == 4 and {r.status for r in records} == {"completed"}  # none lost, none duplicated
    assert Counter(r.config_hash for r in records) == Counter(p.config.config_hash() for p in grid.points())
    victim = registry.get(killed[0]["run_id"])
    log = (registry.run_dir(victim.id) / "log.txt").read_text()
    # Resumed, not restarted from step 0: from the checkpoint seen before the kill, or one the run wrote in the
    # moment between the killer seeing it and the SIGKILL landing
    resumed = re.search(r"resuming from checkpoint-(\d+)", log)
    assert resumed, log
    assert int(resumed.group(1)) >= int(killed[0]["checkpoint"].split("-")[1])
    assert registry.summary(victim.id).efficiency.steps == 12
    retried = [d for kind, d in events if kind == "retried"]
    assert [d["run_id"] for d in retried] == [victim.id] and "resumed from checkpoint-" in retried[0]["how"]
    with pytest.raises(Exception):  # noqa: B017 - its training process died with its worker
        os.kill(killed[0]["child"], 0)

    # Run again: every point completed, nothing is submitted
    again = Sweep(grid, registry, ray=RayPlacement(cluster.address)).execute()
    assert (again.done, again.skipped) == (0, 4) and len(registry.list()) == 4


def test_the_runs_folder_must_be_shared(tiny_model_dir, tmp_path):
    config = killable_grid(tiny_model_dir("bert")).points()[0].config
    with pytest.raises(StudioError, match="not shared with node .*same path on every node"):
        train_point(config, str(tmp_path / "runs"), "20260101-000000-ray-grid-0000")  # the driver reserved nothing


def test_a_retry_resumes_from_the_checkpoint_or_trains_again_in_the_same_folder(tiny_model_dir, runs_dir):
    from studio.ray_sweep import WORKER_DIED, _take_over

    registry = Registry(runs_dir)
    config = killable_grid(tiny_model_dir("bert")).points()[0].config
    with_checkpoint = registry.create(config).id
    for step, complete in ((3, True), (6, False)):  # checkpoint-6 was cut off by the kill
        folder = registry.run_dir(with_checkpoint) / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "optimizer.pt").write_bytes(b"x")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert _take_over(registry, with_checkpoint) == "checkpoint-3"
    assert (registry.get(with_checkpoint).status, registry.get(with_checkpoint).message) == ("interrupted", WORKER_DIED)

    without = registry.create(config).id  # killed before its first checkpoint
    assert _take_over(registry, without) is None
    assert [r.id for r in registry.list()] == [with_checkpoint]  # its row is gone; its folder stays reserved, empty
    assert registry.run_dir(without).is_dir() and not any(registry.run_dir(without).iterdir())


def test_a_run_asks_for_a_share_of_a_gpu_or_of_a_cpu_slot():
    options, slots = task_options(RayPlacement("auto", workers=4), {"GPU": 2.0, "CPU": 32.0})
    assert (options["num_gpus"], options["num_cpus"], slots) == (0.25, 0, 8)
    assert options["max_retries"] == 3 and options["retry_exceptions"] is False
    options, slots = task_options(RayPlacement("auto", workers=2), {"CPU": 3.0})
    assert ("num_gpus" not in options, options["num_cpus"], slots) == (True, 0.5, 6)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ray", "127.0.0.1:1"], "no Ray cluster at 127.0.0.1:1 .*ray start --head"),
        (["--ray", "my-cluster"], "takes the head's HOST:PORT"),
        (["--ray", "auto", "--gpus", "0,1"], "--gpus picks this machine's GPUs"),
        (["--ray", "auto", "--workers", "0"], "workers: must be at least 1"),
        (["--ray", "auto", "--retries", "-1"], "retries: must be 0 or more"),
    ],
)
def test_bad_ray_options_are_said_in_one_line(args, words, runs_dir, capsys, tiny_model_dir, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"base: {{name: g, model: {{name: {tiny_model_dir('bert')}}}, data: {{source: imdb-sample}}}}\n"
                    "axes: {seed: [1, 2]}\n")  # fmt: skip
    assert main(["--runs-dir", str(runs_dir), "sweep", str(grid), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(words, err), err


def test_a_retry_that_resumes_launches_resume_not_train(tmp_path):
    from studio.launch import Launch

    launch = Launch(("--quiet",), tmp_path, "20260101-000000-g-0a1b", resume=True)
    assert launch.studio_args() == ["--runs-dir", str(tmp_path), "resume", "20260101-000000-g-0a1b", "--quiet"]


@pytest.mark.slow
def test_stopping_a_grid_on_ray_stops_the_runs_training_and_cancels_the_queued_one(cluster, tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    grid = killable_grid(tiny_model_dir("bert"), seeds=(1, 2, 3))
    grid.base = grid.base.with_overrides(["train.max_steps=100000", "train.checkpoint_steps=null"])
    sweep = Sweep(grid, registry, ray=RayPlacement(cluster.address)).start()
    deadline = time.time() + 240
    while time.time() < deadline and len(registry.list(status="running")) < 2:  # two train; the third waits
        time.sleep(0.5)
    assert len(registry.list(status="running")) == 2
    sweep.stop()
    state = sweep.wait(240)
    assert state.finished and (state.done, state.failed) == (2, 0)
    assert sorted(r.status for r in registry.list()) == ["stopped", "stopped"]  # evaluated and saved, as any Stop
    assert sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) == sorted(
        r.id for r in registry.list()
    )  # the queued run's reserved folder was given back


@pytest.mark.parametrize("head_auth", ["token", "disabled"])
def test_a_head_started_by_hand_is_joined_with_the_token_this_machine_has(head_auth, tmp_path):
    """`ray start --head` where ~/.ray/auth_token exists turns token authentication on; `connect` sends the token
    (Ray itself does not, for an explicit address), and a head without authentication ignores it."""
    import socket
    import subprocess
    import sys

    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a" * 32)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(home)}
    head_env = env if head_auth == "token" else env | {"RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
        env=head_env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        client = (
            "import ray; from studio.ray_sweep import RayPlacement, connect; "
            f"connect(RayPlacement('127.0.0.1:{port}')); print('CPU', ray.cluster_resources().get('CPU'))"
        )
        for _ in range(60):  # the head takes a few seconds to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        out = subprocess.run([sys.executable, "-c", client], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "CPU 1.0" in out.stdout, out.stderr[-2000:]
    finally:  # the whole head at once (on SIGTERM `ray start --block` takes ~30 s); its idle workers follow it
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(60)
