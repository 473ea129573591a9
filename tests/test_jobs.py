"""The app's job slot: one run at a time, stopped on request, its view the same after a page reload."""

from __future__ import annotations

import time

import pytest
from test_training import tiny_config

from studio.errors import StudioError
from studio.jobs import Jobs
from studio.registry import Registry
from studio.runlog import LogFollower


def wait_for(predicate, timeout=120.0, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def test_one_run_at_a_time_stop_and_a_fresh_view_of_the_log(tiny_model_dir, runs_dir):
    jobs = Jobs(Registry(runs_dir))
    with pytest.raises(StudioError, match="nothing is training"):
        jobs.stop()
    config = tiny_config(tiny_model_dir("bert"), max_steps=400, logging_steps=1, eval_strategy="steps", eval_steps=3)
    job = jobs.start(config)
    with pytest.raises(StudioError, match="already training"):
        jobs.start(config)  # never two runs in parallel on one device
    assert jobs.active() is job
    wait_for(lambda: jobs.view(job.key).step >= 4)
    assert "stopping" in jobs.stop()
    assert "already requested" in jobs.stop()
    result = job.run.wait(timeout=120)
    assert result.status == "stopped" and job.run_id == result.run_id
    live = jobs.view(job.key)
    assert live.finished and live.status == "stopped"
    # A page that reloads (or another process) reads the same run from its metrics.jsonl alone.
    fresh = LogFollower(Registry(runs_dir).run_dir(result.run_id) / "metrics.jsonl").refresh()
    assert fresh.train_loss == live.train_loss and len(fresh.train_loss) >= 4
    assert fresh.evals and fresh.evals[0]["step"] == 3 and "accuracy" in fresh.evals[0]
    assert fresh.test["accuracy"] == pytest.approx(result.summary.test.accuracy)
    assert jobs.view(result.run_id) is live  # the run id and the job key name the same follower
    assert jobs.active() is None
    jobs.start(config.with_overrides(["train.max_steps=2"])).run.wait(timeout=120)  # the slot is free again


def test_a_run_training_in_another_process_blocks_start(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    record = registry.create(tiny_config(tiny_model_dir("bert")))  # a `running` row owned by this live pid
    with pytest.raises(StudioError, match="another process"):
        Jobs(registry).start(tiny_config(tiny_model_dir("bert")))
    registry.update(record.id, status="failed")
