"""The playground's "Why?" in a live app: the /explain and /explain_mistake endpoints through gradio_client, and
the shaded words in a real headless Chromium (a screenshot to look at: $STUDIO_SCREENSHOTS)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from browser import CHROMIUM, opened, screenshots
from gradio_client import Client
from test_ui_live import finished_run, tiny_preset

from studio.config import RunConfig
from studio.inference import mistakes
from studio.training import Run
from studio.ui import CSS, build_app

pytestmark = pytest.mark.slow  # a live app on localhost
TEXT = "What a wonderful, moving film <3 & more."


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("live-explain")
    app = build_app(root / "runs", preset=tiny_preset(root, tiny_model_dir("bert")))
    app.queue().launch(prevent_thread_lock=True, quiet=True, css=CSS)
    yield app, Client(app.local_url, verbose=False)
    app.close()


def second_run(app, tiny_model_dir) -> str:
    """Another finished tiny run (a full fine-tune), for A/B."""
    config = RunConfig.from_yaml(tiny_preset(Path(tempfile.mkdtemp()), tiny_model_dir("bert"), max_steps=4))
    config = config.with_overrides(["method.name=full", "train.eval_strategy=no", "train.eval_steps=null"])
    result = Run(config, app.studio.registry).execute()
    assert result.status == "completed", result.message
    return result.run_id


def test_why_shades_the_words_of_run_a_and_run_b_side_by_side(live, tiny_model_dir):
    app, client = live
    a = finished_run(app, tiny_model_dir)
    b = second_run(app, tiny_model_dir)
    client.predict(api_name="/playground_runs")
    shown, said = client.predict(a, None, TEXT, "(predicted)", api_name="/explain")
    assert said == "" and shown.count('class="studio-explain"') == 1 and f"Run A ({a})" in shown
    assert "&lt;" in shown and "&amp;" in shown and "<3" not in shown  # the text escaped
    assert "wonderful</span>" in shown and "baseline" in shown and "32 steps" in shown
    both, _ = client.predict(a, b, TEXT, "negative", api_name="/explain")
    assert both.count('class="studio-explain"') == 2 and "display:flex" in both
    assert f"Run B ({b})" in both and both.count("why <b>negative</b>") == 2  # the label picked, in both runs


def test_why_explains_a_picked_mistake_toward_its_answer_and_the_true_label(live, tiny_model_dir):
    app, client = live
    a = finished_run(app, tiny_model_dir)
    client.predict(api_name="/playground_runs")
    table, _ = client.predict(a, "test", api_name="/mistakes")
    wrong = mistakes(app.studio.registry, a, "test")
    assert len(wrong), "the tiny run makes mistakes"
    row = wrong.iloc[0]
    shown, said = client.predict(a, row["text"], table, api_name="/explain_mistake")
    assert said == "" and shown.count('class="studio-explain"') == 2
    assert f"Run A&#x27;s answer · why <b>{row['predicted']}</b>" in shown  # the title escaped too
    assert f"the true label · why <b>{row['label']}</b>" in shown


def test_why_with_no_run_or_no_text_says_what_to_do(live, tiny_model_dir):
    app, client = live
    assert "pick a run first" in client.predict(None, None, TEXT, "(predicted)", api_name="/explain")[1]
    a = finished_run(app, tiny_model_dir)
    assert "type a text to explain first" in client.predict(a, None, "  ", "(predicted)", api_name="/explain")[1]
    table, _ = client.predict(a, "test", api_name="/mistakes")
    assert "pick one in the table first" in client.predict(a, "", table, api_name="/explain_mistake")[1]


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="needs Debian's chromium")
def test_why_in_the_browser(live, tiny_model_dir, tmp_path_factory):
    app, _ = live
    a = finished_run(app, tiny_model_dir)
    shots = screenshots(tmp_path_factory.mktemp("screenshots"))
    with opened(app.local_url) as page:
        page.get_by_role("tab", name="5 · Playground").click()
        page.locator("#run-a input").click()
        page.get_by_role("option", name=a).first.click()
        page.locator("#play-text textarea").fill(TEXT)
        page.locator("#why").click()
        page.locator("#why-html .studio-explain").first.wait_for()
        assert "wonderful" in page.locator("#why-html").inner_text()
        assert re.search(r"against (positive|negative)", page.locator("#why-html").inner_text())  # the legend
        page.screenshot(path=shots / "5-playground-why.png", full_page=True)
