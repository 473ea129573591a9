"""The studio in a real headless Chromium: every tab, a training started and stopped, a prediction.

Uses Debian's chromium (no browser download) through playwright. Screenshots of each step go to
$STUDIO_SCREENSHOTS (default: the test's temporary folder) so a person can look at them.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from test_ui_live import tiny_preset

from studio.ui import build_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Skipped on a developer machine without Chromium; in CI (.ci/run installs it) a missing browser fails instead.
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="needs Debian's chromium (apt install chromium)"
)


@pytest.fixture(scope="module")
def page(tmp_path_factory, tiny_model_dir):
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("browser")
    app = build_app(root / "runs", preset=tiny_preset(root, tiny_model_dir("bert")))
    app.queue().launch(prevent_thread_lock=True, quiet=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(app.local_url)
        page.get_by_text("Fine-Tune Studio").first.wait_for()
        page.app = app
        yield page
        browser.close()
    job = app.studio.jobs.active()
    if job:
        job.run.stop()
        job.run.wait(60)
    app.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def pick_first(page, dropdown: str) -> None:
    """Choose the first option of a dropdown (the newest run)."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option").first.click()


def test_data_tab_inspects_on_load(page, shots):
    page.get_by_text("240 rows").first.wait_for()  # hydrated, and the source was inspected on load
    assert "2 labels" in page.locator("body").inner_text()
    page.screenshot(path=shots / "1-data.png", full_page=True)


def test_model_tab_estimates_and_follows_the_method(page, shots):
    tab(page, "2 · Model & method")
    page.get_by_text("GB estimated").first.wait_for()
    assert page.get_by_label("LoRA rank r").first.is_visible()
    page.get_by_label("qlora", exact=True).check()
    page.get_by_text("Quantization").first.wait_for()  # QLoRA settings appear
    page.get_by_label("full", exact=True).check()
    page.get_by_text("Quantization").first.wait_for(state="hidden")
    assert not page.get_by_label("LoRA rank r").first.is_visible()
    page.get_by_label("lora", exact=True).check()
    page.get_by_role("button", name="CLI command").click()
    page.get_by_text("python -m studio train").first.wait_for()
    page.screenshot(path=shots / "2-model.png", full_page=True)


def test_train_tab_streams_then_stops_cleanly(page, shots):
    tab(page, "3 · Train")
    page.locator("#stop").click()
    page.get_by_text("nothing is training").first.wait_for()  # stop with nothing running: a message
    page.locator("#start").click()
    page.locator("#run-status").get_by_text("training").wait_for()
    deadline = time.time() + 120
    while (
        "step 0 " in page.locator("#run-progress").inner_text()
        or "waiting" in page.locator("#run-progress").inner_text()
    ):
        assert time.time() < deadline, "no progress streamed"
        time.sleep(0.5)
    page.locator("#start").click()
    page.get_by_text("already training").first.wait_for()  # a second run is refused
    time.sleep(3)  # a few curve points
    page.screenshot(path=shots / "3-train-running.png", full_page=True)
    page.locator("#stop").click()
    page.locator("#run-status").get_by_text("stopped").wait_for(timeout=120_000)
    page.locator("#run-results").get_by_role("heading", name="Test accuracy").wait_for()
    assert "stop requested" in page.locator("#run-log textarea").input_value()
    page.screenshot(path=shots / "3-train-stopped.png", full_page=True)


def test_a_reloaded_page_shows_the_run(page, shots):
    page.reload()
    page.get_by_text("Fine-Tune Studio").first.wait_for()
    tab(page, "3 · Train")
    page.locator("#run-status").get_by_text("stopped").wait_for()
    run_id = page.app.studio.registry.list()[0].id
    assert run_id in page.locator("#run-status").inner_text()
    # Restart after the stop: a new run trains, shows its validation metrics, and stops again.
    page.locator("#start").click()
    page.locator("#run-status").get_by_text("training").wait_for()
    page.locator("#run-results").get_by_text("Validation at step").wait_for()
    page.locator("#stop").click()
    page.locator("#run-status").get_by_text("stopped").wait_for(timeout=120_000)
    assert page.app.studio.registry.list()[0].id != run_id


def test_runs_tab_lists_and_shows_the_run(page, shots):
    tab(page, "4 · Runs")
    table = page.locator("#runs-table")
    table.get_by_text("stopped").first.wait_for(state="attached")  # Gradio's cells report "hidden" to playwright
    pick_first(page, "#run-select")
    page.locator("#run-details").get_by_role("heading", name="Test accuracy").wait_for()
    run_id = page.app.studio.registry.list()[0].id
    assert run_id in page.locator("#run-details").inner_text()
    page.screenshot(path=shots / "4-runs.png", full_page=True)


def test_playground_predicts(page, shots):
    tab(page, "5 · Playground")
    page.locator("#predict").click()
    page.get_by_text("pick a run first").first.wait_for()  # predicting with no run: a message
    pick_first(page, "#run-a")
    page.locator("#play-text textarea").fill("What a wonderful, moving film.")
    page.locator("#predict").click()
    page.locator("#label-a").get_by_text("positive").first.wait_for()
    page.screenshot(path=shots / "5-playground.png", full_page=True)


def test_compare_tab_lists_runs_a_grid_and_draws_the_study(page, tmp_path_factory, tiny_model_dir, shots):
    """The issue's walk: pick the ablation preset and see its runs with memory estimates; run a (tiny) grid,
    watch its progress, get the heatmap and the Pareto plots. Its own app (a grids folder), the same browser."""
    import yaml

    from studio.presets import GRIDS_DIR

    root = tmp_path_factory.mktemp("browser-grid")
    grids = root / "grids"
    grids.mkdir()
    shutil.copy(GRIDS_DIR / "imdb_peft_ablation.yaml", grids)
    base = {"name": "tiny-study", "data": {"source": "goemotions", "multi_label": "drop", "max_length": 32,
            "balance": {"num_labels": 2, "num_samples": 80}}, "model": {"name": str(tiny_model_dir("bert"))},
            "train": {"epochs": 2, "batch_size": 16, "eval_strategy": "epoch", "learning_rate": 1e-3}}  # fmt: skip
    axes = {"setup": {"full": {"method.name": "full"}, "lora": {"method.name": "lora"}},
            "data.balance.num_labels": [2, 3], "data.balance.num_samples": [80]}  # fmt: skip
    (grids / "tiny_study.yaml").write_text(yaml.safe_dump({"name": "tiny-study", "base": base, "axes": axes}))
    app = build_app(root / "runs", grids_dir=grids)
    app.queue().launch(prevent_thread_lock=True, quiet=True)
    other = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        other.set_default_timeout(60_000)
        other.goto(app.local_url)
        other.get_by_text("Fine-Tune Studio").first.wait_for()
        tab(other, "6 · Compare (grids)")
        other.get_by_role("button", name="List its runs").click()  # the first grid: the ablation
        other.get_by_text("42 runs").first.wait_for()
        other.get_by_text("method=qlora").first.wait_for(state="attached")
        assert " GB" in other.content()  # each run's memory estimate
        other.screenshot(path=shots / "6-compare-ablation-runs.png", full_page=True)
        other.locator("#grid-choice input").click()
        other.get_by_role("option", name="tiny_study").click()
        other.locator("#grid-start").click()
        other.locator("#grid-progress").get_by_text("finished").wait_for(timeout=180_000)
        assert "4 trained, 0 done before, 0 failed" in other.locator("#grid-progress").inner_text()
        other.get_by_text("Accuracy vs peak memory").first.wait_for()
        other.get_by_text("Accuracy vs training time").first.wait_for()
        other.get_by_text("accuracy (mean over seeds)").first.wait_for()  # the heatmap
        other.screenshot(path=shots / "6-compare-study.png", full_page=True)
    finally:
        other.close()
        if app.studio.jobs.sweep() is not None:
            app.studio.jobs.sweep().wait(60)
        app.close()
