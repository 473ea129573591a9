"""The studio in a real headless Chromium: every tab, a training started and stopped, a prediction.

Uses Debian's chromium (no browser download) through playwright. Screenshots of each step go to
$STUDIO_SCREENSHOTS (default: the test's temporary folder) so a person can look at them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from test_ui_live import BOTH, finished_run, multi_label_run, tiny_preset

from studio.ui import CSS, build_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Skipped on a developer machine without Chromium; in CI (.ci/run installs it) a missing browser fails instead.
pytestmark = [
    pytest.mark.slow,  # a live app driven in a headless browser
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium (apt install chromium)",
    ),
]


@pytest.fixture(scope="module")
def browser_app(tmp_path_factory, tiny_model_dir):
    """The app and one Chromium for the module; each test opens its own page (tests pass alone, in any order)."""
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("browser")
    app = build_app(root / "runs", preset=tiny_preset(root, tiny_model_dir("bert")))
    app.queue().launch(prevent_thread_lock=True, quiet=True, css=CSS)  # the page as app.py serves it
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield app, browser
        browser.close()
    app.close()


@pytest.fixture
def page(browser_app):
    app, browser = browser_app
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(app.local_url)
    page.get_by_text("Fine-Tune Studio").first.wait_for()
    page.get_by_text("240 rows").first.wait_for()  # hydrated: the source was inspected on load
    page.app = app
    yield page
    page.close()
    job = app.studio.jobs.active()
    if job:  # a test that failed mid-run leaves no run behind for the next one
        job.run.stop()
        job.run.wait(60)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_a_separate_test_file_in_the_data_tab(page, shots, tmp_path):
    """The folded "Separate validation / test files": an uploaded test file fills its slot; Inspect's table says
    where each split came from and counts the test texts also in train. A test file that does not exist: the
    message where the summary was, its section open, and the fields it names in sight, covered by nothing."""
    import pandas as pd

    texts = [f"review {i}: the film was {'great' if i % 2 else 'dull'}" for i in range(80)]
    labels = ["positive" if i % 2 else "negative" for i in range(80)]
    pd.DataFrame({"review": texts, "sentiment": labels}).to_csv(tmp_path / "reviews.csv", index=False)
    held = [*texts[:4], *(f"held-out review {i}" for i in range(16))]  # four reviews also in train (or validation)
    pd.DataFrame({"review": held, "sentiment": labels[:20]}).to_csv(tmp_path / "held-out.csv", index=False)
    page.locator("#data-source textarea").fill(str(tmp_path / "reviews.csv"))
    page.get_by_text("Separate validation / test files").click()
    with page.expect_file_chooser() as chooser:
        page.locator("#test-upload").click()
    chooser.value.set_files(tmp_path / "held-out.csv")
    slot = page.locator("#test-source textarea, #test-source input").first
    deadline = time.time() + 30
    while "held-out.csv" not in slot.input_value():  # kept in the runs folder, its path in the slot
        assert time.time() < deadline, slot.input_value()
        time.sleep(0.2)
    page.get_by_role("button", name="Inspect data").click()
    summary = page.locator("#data-summary")
    summary.get_by_text("(data.test_source)").wait_for()
    assert "texts also in train" in summary.inner_text() and "20 test" in summary.inner_text()
    page.screenshot(path=shots / "1-data-separate-test-file.png", full_page=True)
    slot.fill(str(tmp_path / "missing.csv"))
    page.get_by_text("Separate validation / test files").click()  # folded away again
    slot.wait_for(state="hidden")
    page.get_by_role("button", name="Inspect data").click()
    summary.get_by_text("This data cannot be used yet").wait_for()
    slot.wait_for(state="visible")  # the section of the field the message names opens
    assert "Test file: file not found" in summary.inner_text()  # data.test_source, by its label
    for field in ("#test-source", "#data-task"):  # the field the message names, and the others beside it
        assert_not_covered(page, field)
    page.screenshot(path=shots / "1-data-failed.png", full_page=True)


def test_an_upload_replaces_the_old_data_and_is_inspected(page, shots, tmp_path):
    """Uploading a file reads it at once: the sample shown goes from the samples box, the old summary and rows
    give way to the new file's, and the column pickers offer its header; picking a sample again shows it."""
    import pandas as pd

    assert page.locator("#data-sample input").input_value().startswith("imdb-sample")
    texts = [f"ticket {i}: the {'invoice' if i % 2 else 'login'} is wrong" for i in range(60)]
    pd.DataFrame({"text": texts, "label": ["billing" if i % 2 else "access" for i in range(60)]}).to_csv(
        tmp_path / "tickets.csv", index=False
    )
    page.locator("#data-upload input[type=file]").set_input_files(tmp_path / "tickets.csv")
    summary = page.locator("#data-summary")
    summary.get_by_text("60 rows").wait_for()
    assert "access, billing" in summary.inner_text() and "240 rows" not in summary.inner_text()
    assert page.locator("#data-sample input").input_value() == ""
    assert "tickets.csv" in page.locator("#data-source textarea").input_value()
    page.screenshot(path=shots / "1-data-upload.png", full_page=True)
    page.locator("#data-sample input").click()  # back to the sample: read again, shown in its box
    page.get_by_role("option", name=re.compile("^imdb-sample")).click()
    summary.get_by_text("240 rows", exact=True).wait_for()
    assert page.locator("#data-sample input").input_value().startswith("imdb-sample")
    assert page.locator("#data-source textarea").input_value() == "imdb-sample"
    assert "tickets.csv" not in page.locator("#data-upload").inner_text()  # the upload box let go of its file


def test_model_tab_estimates_and_follows_the_method(page, shots):
    tab(page, "2 · Model & method")
    page.get_by_text("GB estimated").first.wait_for()
    assert page.locator("#model-max-length").is_visible()  # a basic setting, beside the estimate
    assert not page.get_by_label("LoRA rank r").first.is_visible()  # the method's settings: under Advanced
    page.get_by_text("Advanced: the method").click()
    page.get_by_label("LoRA rank r").first.wait_for()
    page.get_by_label("qlora", exact=True).check()
    page.get_by_text("Quantization").first.wait_for()  # QLoRA settings appear
    page.get_by_label("full", exact=True).check()
    page.get_by_text("Quantization").first.wait_for(state="hidden")
    assert not page.get_by_label("LoRA rank r").first.is_visible()
    page.get_by_label("lora", exact=True).check()
    page.get_by_role("button", name="CLI command").click()
    page.get_by_text("python -m studio train").first.wait_for()
    page.screenshot(path=shots / "2-model.png", full_page=True)


def wait_for_progress(page, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while any(s in page.locator("#run-progress").inner_text() for s in ("step 0 ", "waiting")):
        assert time.time() < deadline, "no progress streamed"
        time.sleep(0.5)


def assert_not_covered(page, selector: str) -> None:
    """The element's centre is the element itself (or inside it), not a toast or overlay drawn over it."""
    covered = page.locator(selector).evaluate(
        """el => { const r = el.getBoundingClientRect();
                   const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                   return top && !el.contains(top) ? (top.className || top.tagName) : null; }"""
    )
    assert covered is None, f"{selector} is covered by {covered}"


def wait_for_buttons(page, start: bool, stop: bool, timeout: float = 30) -> None:
    """Start and Stop enabled as given (the page sets them by the state of the training slot)."""
    deadline = time.time() + timeout
    while (page.locator("#start").is_enabled(), page.locator("#stop").is_enabled()) != (start, stop):
        assert time.time() < deadline, f"start enabled {page.locator('#start').is_enabled()}, stop {stop}"
        time.sleep(0.3)


def started_run(page, timeout: float = 120) -> str:
    """The id of the run Start began, once the status line shows it. (Before the first tick the status line,
    "No run yet: press Start training", already has the word "training"; a re-attached page shows the newest
    run's progress until then.)"""
    deadline = time.time() + timeout
    while True:
        job = page.app.studio.jobs.current()  # None until the click has reached the server
        run_id = job.run_id if job is not None else None
        if run_id and run_id in page.locator("#run-status").inner_text():
            return run_id
        assert time.time() < deadline, (
            f"the run never showed; job {job!r}; status: {page.locator('#run-status').inner_text()[:300]!r}; "
            f"message: {page.locator('#train-message').inner_text()[:300]!r}"
        )
        time.sleep(0.5)


def test_playground_shows_a_multi_label_runs_label_set_and_bars(page, tiny_model_dir, shots):
    """A multi-label run: the answer line names every label above its threshold, and a bar per label shows its
    probability and threshold (the single-label Label gives way); a single-label run then brings the Label back."""
    multi = multi_label_run(page.app, tiny_model_dir)
    single = finished_run(page.app, tiny_model_dir)
    page.reload()  # the runs made for this test are newer than the page
    page.get_by_text("240 rows").first.wait_for()
    tab(page, "5 · Playground")
    page.locator("#run-a input").click()
    page.get_by_role("option", name=multi).first.click()
    page.locator("#play-text textarea").fill(BOTH)
    page.locator("#predict").click()
    verdict = page.locator("#play-verdict")
    verdict.get_by_text(re.compile(r"Run A: (anger, joy|joy, anger)")).wait_for()
    bars = page.locator("#bars-a")
    bars.get_by_text("threshold", exact=True).wait_for()  # plotly drew the figure, with its legend
    ticks = {t.strip() for t in bars.locator(".ytick text").all_text_contents()}
    assert ticks == {"anger", "joy", "neutral"}  # one bar per label, every name in view
    assert "given (reaches its threshold)" in bars.locator(".legendtext").all_text_contents()
    assert not page.locator("#label-a").is_visible()  # the Label gives way to the bars
    page.screenshot(path=shots / "5-playground-multilabel.png", full_page=True)
    page.locator("#run-a input").click()
    page.get_by_role("option", name=single).first.click()
    page.locator("#predict").click()
    page.locator("#label-a").get_by_text(re.compile("positive|negative")).first.wait_for()
    bars.wait_for(state="hidden")


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
    app.queue().launch(prevent_thread_lock=True, quiet=True, css=CSS)  # the page as app.py serves it
    other = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        other.set_default_timeout(60_000)
        other.goto(app.local_url)
        other.get_by_text("Fine-Tune Studio").first.wait_for()
        tab(other, "6 · Compare (grids)")
        other.get_by_role("button", name="List its runs").click()  # the first grid: the ablation
        other.get_by_text("42 runs").first.wait_for()
        other.get_by_text("qlora-attention").first.wait_for(state="attached")
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


def _no_error_badge(page) -> None:
    """Gradio marks each output of an event that raised with an "Error" badge (class `error`) that must be closed
    before the field under it can be used: none may be left anywhere on the page."""
    assert page.locator(".error").count() == 0
    assert page.get_by_text("Error", exact=True).count() == 0


def test_a_failed_action_says_why_by_its_button_and_leaves_every_field_usable(page, shots, tmp_path):
    """Bad inputs of tests/test_bad_inputs.py's matrix in the page: a broken preset YAML and one with a bad value
    loaded in the Model tab, a bad learning rate and a missing data file at Start, Stop with nothing running."""
    tab(page, "Model")
    said = page.locator("#model-message")
    broken = tmp_path / "my-preset.yaml"
    broken.write_text("name: x\ntrain:\n  learning_rate: 1e-4\n   epochs: 2\n")
    page.locator("input[type=file]").last.set_input_files(str(broken))
    said.get_by_text("my-preset.yaml is not valid YAML at line 4, column 10").wait_for()
    _no_error_badge(page)
    assert "/gradio/" not in said.inner_text()  # the file by its name, not Gradio's temporary copy
    bad_value = tmp_path / "bad-rate.yaml"
    bad_value.write_text("name: x\ntrain:\n  learning_rate: -1\n")
    page.reload()  # a fresh upload box
    page.get_by_text("240 rows").first.wait_for()
    tab(page, "Model")
    page.locator("input[type=file]").last.set_input_files(str(bad_value))
    said.get_by_text("Learning rate: Input should be greater than 0 (got -1)").wait_for()
    page.locator(".studio-flagged").first.wait_for()  # the field it names is outlined
    _no_error_badge(page)
    page.screenshot(path=shots / "errors-model-preset.png", full_page=True)
    rate = page.get_by_label("learning rate", exact=True)
    rate.fill("-1")
    rate.press("Tab")
    tab(page, "Train")
    said = page.locator("#train-message")
    page.locator("#start").click()
    said.get_by_text("Learning rate: Input should be greater than 0 (got -1)").wait_for()
    _no_error_badge(page)
    page.screenshot(path=shots / "errors-train-bad-rate.png", full_page=True)
    tab(page, "Model")
    rate.fill("0.001")
    rate.press("Tab")
    tab(page, "Data")
    page.locator("#data-source textarea").fill(str(tmp_path / "missing.csv"))
    tab(page, "Train")
    page.locator("#start").click()
    deadline = time.time() + 60  # the run's status says it, in the page's words ("Source: file not found: ...")
    while not re.search(r"failed — Source: file not found: \S*missing\.csv", page.locator("body").inner_text()):
        assert time.time() < deadline, page.locator("body").inner_text()[:2000]
        time.sleep(0.5)
    _no_error_badge(page)
    assert page.locator(".studio-flagged").count() <= 1  # the learning rate's outline went with the next try
    assert page.locator("#stop").is_disabled()  # nothing is training: Stop cannot be pressed (the API's /stop says so)
    _no_error_badge(page)


def test_the_newcomer_journey(page, shots):
    """Issue 23's walk in one page (it replaced five separate browser tests of the same steps), each fix asserted
    where a newcomer meets it: the sample inspected on load and
    shown in its box, the preview's labels first and texts cut (2, 6); the basics beside the estimate, a batch
    that cannot fit said as "over by" with ranked Apply buttons that fix it (5, 8); what Start will do, Start and
    Stop by state, an ETA only once measured (3, 4); a reload mid-run, the run to its end; the Runs tab's
    formatted table and its buttons by the run's state (6, 10); the playground's same-run hint (10); the CPU
    grid's one empty state and readable run names (9); a bad input said by its button (1, 7)."""
    # first load: the sample read and named; its first rows with the label first and long reviews cut
    assert page.locator("#data-sample input").input_value().startswith("imdb-sample")
    header = page.locator("#data-preview thead th").all_inner_texts()
    assert header and header[0].strip().lower().startswith("sentiment"), header
    cells = page.locator("#data-preview tbody td").all_inner_texts()
    assert cells and max(len(c) for c in cells) <= 200, max(cells, key=len)
    page.locator("#data-labels-plot .js-plotly-plot").wait_for()  # the charts drawn, not their placeholders
    page.locator("#data-lengths-plot .js-plotly-plot").wait_for()
    page.screenshot(path=shots / "journey-1-data.png", full_page=True)
    # the Model tab: basics in sight; a batch no machine here holds, the advice to fix it, applied in one click
    tab(page, "2 · Model & method")
    page.get_by_text("GB estimated").first.wait_for()
    for basic in ("#model-max-length", "#lr-find"):
        assert page.locator(basic).is_visible(), basic
    model = page.get_by_label("Model", exact=True)
    original = model.input_value()
    model.fill("bert-base")
    model.press("Enter")
    batch = page.get_by_label("batch size", exact=True)
    batch.fill("4096")
    batch.press("Tab")
    page.get_by_text(re.compile(r"over by [\d.,]+ GB")).first.wait_for()
    first = page.locator("#advice-0")
    first.wait_for()
    assert re.search(r"batch \d+", first.inner_text()), first.inner_text()  # the largest batch that fits first
    page.screenshot(path=shots / "journey-2-memory-over.png", full_page=True)
    first.click()
    page.get_by_text("— fits").first.wait_for()
    assert int(batch.input_value()) < 4096
    page.screenshot(path=shots / "journey-2-memory-applied.png", full_page=True)
    model.fill(original)  # back to the tiny model the app opened with, at its batch
    model.press("Enter")
    batch.fill("8")
    batch.press("Tab")
    # Train: the summary, the buttons by state, the ETA only once measured; a reload mid-run; the run's end
    tab(page, "3 · Train")
    page.locator("#start-plan").get_by_text("Start trains").wait_for()  # what Start will do, beside it
    deadline = time.time() + 60  # the Model tab's last edit (the tiny model back) reaches the plan: under load it
    while original not in page.locator("#start-plan").inner_text():  # can lag, and Start would train bert-base
        assert time.time() < deadline, page.locator("#start-plan").inner_text()
        time.sleep(0.5)
    plan = page.locator("#start-plan").inner_text()
    assert "rows: 192 train / 24 validation / 24 test" in plan and "trainable parameters" in plan, plan
    assert "peak memory" in plan, plan  # the time: measured after the first steps, or from an earlier run here
    assert "time: measured after the first steps" in plan or re.search(r"time ≈ .* a step in run ", plan), plan
    wait_for_buttons(page, start=True, stop=False)  # nothing to stop: Stop is off
    page.screenshot(path=shots / "start_summary.png", full_page=False)
    page.locator("#start").click()
    run_id = started_run(page)
    wait_for_buttons(page, start=False, stop=True)  # a second Start is not offered while it trains
    wait_for_progress(page)
    for button in ("#start", "#stop"):
        assert_not_covered(page, button)
    page.screenshot(path=shots / "3-train-running.png", full_page=True)
    page.reload()  # mid-run: the fresh page re-attaches to the run that goes on training
    page.get_by_text("Fine-Tune Studio").first.wait_for()
    tab(page, "3 · Train")
    page.locator("#run-status").get_by_text(run_id).wait_for()
    wait_for_buttons(page, start=False, stop=True)  # the re-attached page offers Stop, not Start
    page.locator("#run-results").get_by_text("Validation at step").wait_for()
    deadline = time.time() + 240  # a few steps more: slow when the machine is busy
    while "ETA measured after" in page.locator("#run-progress").inner_text():
        assert time.time() < deadline, page.locator("#run-progress").inner_text()
        time.sleep(0.5)
    assert re.search(r"ETA \d+[hms]", page.locator("#run-progress").inner_text())  # measured: a duration
    page.locator("#stop").click()
    page.locator("#run-status").get_by_text("stopped").wait_for(timeout=120_000)
    page.locator("#run-results").get_by_role("heading", name="Test accuracy").wait_for()
    assert "stop requested" in page.locator("#run-log textarea").input_value()
    wait_for_buttons(page, start=True, stop=False)
    page.screenshot(path=shots / "journey-3-train-done.png", full_page=True)
    page.reload()  # after the end: the finished run and its results
    page.get_by_text("Fine-Tune Studio").first.wait_for()
    tab(page, "3 · Train")
    page.locator("#run-status").get_by_text(run_id).wait_for()
    assert "stopped" in page.locator("#run-status").inner_text()
    page.locator("#run-results").get_by_role("heading", name="Test accuracy").wait_for()
    # Runs: accuracy as a percentage; the picked run's buttons say what they can do for it
    tab(page, "4 · Runs")
    table = page.locator("#runs-table")
    table.get_by_text(run_id).first.wait_for(state="attached")
    deadline = time.time() + 60  # the table refreshes as the run's end is recorded
    while not re.search(r"stopped.*\d+\.\d%", table.text_content()):  # accuracy as 80.2%, not 0.8019
        assert time.time() < deadline, table.text_content()[:500]
        time.sleep(0.5)
    page.locator("#run-select input").click()
    page.get_by_role("option", name=run_id).first.click()
    page.locator("#run-details").get_by_role("heading", name="Test accuracy").wait_for()
    page.get_by_text("Export: download, merge, push to the Hub").click()
    page.locator("#resume").get_by_text("Resume: only interrupted runs").wait_for()
    assert page.locator("#resume").is_disabled()  # nothing to resume: it says why
    assert page.locator("#merge").is_enabled()  # a LoRA run that ended: its adapter can be merged
    page.screenshot(path=shots / "journey-4-runs.png", full_page=True)
    # Playground: the same run as A and B is a hint, and A still answers
    tab(page, "5 · Playground")
    for picker in ("#run-a", "#run-b"):
        page.locator(f"{picker} input").click()
        page.get_by_role("option", name=run_id).first.click()
    page.locator("#play-text textarea").fill("What a wonderful, moving film.")
    page.locator("#predict").click()
    page.get_by_text("Run B is the same run as Run A").first.wait_for()
    page.locator("#label-a").get_by_text(re.compile("positive|negative")).first.wait_for()
    page.screenshot(path=shots / "journey-5-playground.png", full_page=True)
    # Compare: the CPU grid, one empty state, runs named in words
    tab(page, "6 · Compare (grids)")
    page.locator("#grid-empty").get_by_text("Nothing to compare yet").wait_for()
    assert "cpu_quick_methods" in page.locator("#grid-choice input").input_value()
    page.get_by_role("button", name="List its runs").click()
    page.get_by_text("memory estimate").first.wait_for(state="attached")  # the listing's table
    page.get_by_text("done before").first.wait_for(state="attached")
    assert "method.name=" not in page.locator("body").text_content()  # runs named in words, not override paths
    page.screenshot(path=shots / "journey-6-compare.png", full_page=True)
    # a bad input: said by its button in the page's words, nothing covered, no error badge
    tab(page, "2 · Model & method")
    rate = page.get_by_label("learning rate", exact=True)
    rate.fill("-1")
    rate.press("Tab")
    tab(page, "3 · Train")
    page.locator("#start").click()
    page.locator("#train-message").get_by_text("Learning rate: Input should be greater than 0").wait_for()
    _no_error_badge(page)
    assert_not_covered(page, "#start")
