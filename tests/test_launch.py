"""Training in a child process (`studio.launch`): the command, the run id the parent chooses, and how a child's
failure, death or stop reaches its run's row and log.txt without reading what the child prints."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from test_jobs import wait_for
from test_training import tiny_config

from studio.launch import ChildRun, Launch
from studio.registry import Registry
from studio.training import Run, TrainingRun


def log_of(registry: Registry, run_id: str) -> str:
    return (registry.run_dir(run_id) / "log.txt").read_text()


def test_the_command_for_one_process_and_for_several(tmp_path):
    one = Launch(("cfg.yaml", "--quiet"), tmp_path, "20260101-000000-demo-ab12")
    tail = ["--runs-dir", str(tmp_path), "train", "cfg.yaml", "--quiet", "--run-id", "20260101-000000-demo-ab12"]
    assert one.command() == [sys.executable, "-m", "studio", *tail]
    assert one.env().get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    two = Launch(("cfg.yaml", "--quiet"), tmp_path, "20260101-000000-demo-ab12", processes=2, gpu="1")
    assert two.command() == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "studio", *tail]  # fmt: skip
    assert two.env()["CUDA_VISIBLE_DEVICES"] == "1"


def test_a_run_here_and_a_run_in_a_child_are_both_training_runs(tiny_model_dir, runs_dir):
    registry, config = Registry(runs_dir), tiny_config(tiny_model_dir("bert"))
    assert isinstance(Run(config, registry), TrainingRun) and isinstance(ChildRun(config, registry), TrainingRun)


def test_two_identical_configs_launched_at_once_train_under_the_ids_their_parent_chose(tiny_model_dir, runs_dir):
    """No lookup by config and time: each parent knows its child's run, even when the configs are the same."""
    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert"), max_steps=2, eval_strategy="no")
    children = [ChildRun(config, registry), ChildRun(config, registry)]
    for child in children:
        child.start()
    ids = [child.run_id for child in children]
    assert ids[0] != ids[1] and all(registry.run_dir(i).is_dir() for i in ids)  # reserved before the children run
    assert [child.id for child in children] == [None, None]  # no row yet: the page follows the launch events
    results = [child.wait(240) for child in children]
    assert [r.run_id for r in results] == ids and [r.status for r in results] == ["completed", "completed"]
    for child, result in zip(children, results, strict=True):
        record = registry.get(child.run_id)
        assert child.id == record.id and record.pid == child.pid  # the row its own child created
        assert result.summary.test.accuracy == record.accuracy
    assert sorted(r.id for r in registry.list()) == sorted(ids)
    assert not list((runs_dir / ".launch").iterdir())  # the configs handed to the children are gone
    assert [e.kind for e in _events(children[0])] == ["status", "done"]


def _events(child: ChildRun) -> list:
    out = []
    while not child.events.empty():
        out.append(child.events.get())
    return out


def test_a_child_failing_on_bad_input_leaves_a_failed_row_with_the_reason(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert")).with_overrides(["data.text_column=body"])
    result = ChildRun(config, registry).start().wait(180)
    assert result.status == "failed" and result.message.startswith("data.text_column: ")
    assert "'body'" in result.message  # the child's own words: the column it could not find
    record = registry.get(result.run_id)
    assert record.status == "failed" and record.message == result.message
    assert f"done: {result.message}" in log_of(registry, record.id)
    # On several processes the data is checked before any starts (every rank would fail on it): the same row.
    two = ChildRun(config, registry, processes=2)
    result = two.start().wait(60)
    assert two.exit_code is None and result.status == "failed" and result.message.startswith("data.text_column: ")
    assert registry.get(result.run_id).status == "failed" and result.message in log_of(registry, result.run_id)


def test_a_child_that_dies_before_its_run_exists_leaves_a_failed_row_and_its_error_output(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert"))
    child = ChildRun(config, registry, train_args=[str(runs_dir / "no-such-config.yaml")])  # the child exits 2
    result = child.start().wait(120)
    assert child.exit_code == 2 and result.status == "failed"
    assert result.message == ("the training process ended before training began (exit code 2); the end of its "
                              "error output is in log.txt")  # fmt: skip
    log = log_of(registry, result.run_id)
    assert "error output ---" in log and "no-such-config.yaml" in log  # the child's own error line, from stderr
    assert registry.get(result.run_id).status == "failed"

    killed = ChildRun(config, registry).start()
    wait_for(lambda: killed.pid, timeout=180, every=0.1)
    time.sleep(0.5)  # importing: long before the run has a row
    os.kill(killed.pid, signal.SIGKILL)
    result = killed.wait(60)
    assert result.status == "failed" and "(killed by SIGKILL)" in result.message
    assert registry.get(result.run_id).status == "failed"


def test_a_child_killed_while_training_leaves_its_row_interrupted_with_the_reason(tiny_model_dir, runs_dir):
    registry = Registry(runs_dir)
    config = tiny_config(tiny_model_dir("bert"), max_steps=4000, logging_steps=1, eval_strategy="no")
    child = ChildRun(config, registry).start()
    wait_for(lambda: child.id and '"kind": "log"' in _text(registry.run_dir(child.id) / "metrics.jsonl"), 180, 0.1)
    os.kill(child.pid, signal.SIGKILL)
    result = child.wait(60)
    assert result.status == "interrupted"  # as for any run whose process died: resumable from a checkpoint
    assert result.message.startswith("the process training it ended without finishing (killed by SIGKILL)")
    record = registry.get(child.run_id)
    assert (record.status, record.message) == ("interrupted", result.message)
    assert f"interrupted: {result.message}" in log_of(registry, record.id)


def _text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


@pytest.mark.parametrize("started", [False, True])
def test_a_child_stopped_before_training_leaves_nothing(tiny_model_dir, runs_dir, started):
    """Stopped at once (before the process starts, usually), or once its process has started: a SIGINT it gets
    before it has its own handler. Its signal is Ctrl-C's default again even when the launching process ignores
    SIGINT (a background job of a script passes that on): the stop was lost there and the run trained on."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if started else signal.getsignal(signal.SIGINT))
    try:
        registry = Registry(runs_dir)
        child = ChildRun(tiny_config(tiny_model_dir("bert")), registry).start()
        if started:
            wait_for(lambda: child.pid is not None, 60)
        assert child.request_stop() is None and child.stop_requested  # no run yet: the process is ended
        result = child.wait(120)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (result.run_id, result.status) == (None, "stopped")
    assert registry.list() == [] and not Path(runs_dir / child.run_id).exists()  # the reserved id is given back


def test_train_refuses_a_bad_or_taken_run_id(runs_dir, capsys):
    from studio.cli import main

    for bad in ("../escape", ".hidden", "a/b", "x" * 200):
        assert main(["--runs-dir", str(runs_dir), "train", "quick_demo", "--run-id", bad]) == 2
        assert "is not a valid folder name" in capsys.readouterr().err
    record = Registry(runs_dir).create(tiny_config("m"))
    assert main(["--runs-dir", str(runs_dir), "train", "quick_demo", "--run-id", record.id]) == 2
    assert f"run id {record.id} belongs to another run" in capsys.readouterr().err
