"""The estimate on the held-out set (benchmarks/results/memory_heldout: configurations none of the calibration's,
measured on an H200, each in its own process). Today's estimator is recomputed for every committed row, so a
change to the estimate shows what it does outside the rows it was fitted on. The bounds are today's figures, not
issue 26's goals (median <= 3%, max <= 8%, none over estimate / 0.95), which the estimate does not meet yet: a
change may only keep or improve them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_modules import load

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT / "benchmarks" / "results" / "memory_heldout" / "rows.jsonl"
ROWS2 = ROOT / "benchmarks" / "results" / "memory_heldout2" / "rows.jsonl"
ROWS3 = ROOT / "benchmarks" / "results" / "memory_heldout3" / "rows.jsonl"
ROWS4 = ROOT / "benchmarks" / "results" / "memory_heldout4" / "rows.jsonl"


@pytest.fixture(scope="module")
def heldout():
    return load("memory_heldout")


@pytest.fixture(scope="module")
def rows(heldout):
    return heldout.recompute(ROWS)


def configuration(case: dict) -> tuple:
    """What makes two cases the same measurement (the group aside)."""
    keys = ("model", "method", "batch", "seq", "ckpt", "optimizer", "placement", "r", "bits", "attn", "precision")
    return tuple(case.get(k) for k in keys)


def test_the_set_is_disjoint_from_the_calibration_and_spans_what_issue_26_names(heldout):
    fitted = {configuration(c) for c in load("memory_validation").grid()}
    cases = heldout.grid()
    assert not [c for c in cases if configuration(c) in fitted]
    held = [c for c in cases if c["group"] == "heldout"]
    assert len(held) >= 40
    assert {c["method"] for c in held} == {"full", "lora", "qlora", "ia3"}
    assert {"minilm-l6", "smollm2-135m", "bert-base", "deberta-v3-base", "qwen2.5-1.5b", "gemma-3-1b"} <= {
        c["model"] for c in held
    }
    assert min(c["batch"] for c in held) == 1 and max(c["batch"] for c in held) == 256
    assert min(c["seq"] for c in held) == 64 and max(c["seq"] for c in held) == 2048
    assert {c.get("bits", 4) for c in held if c["method"] == "qlora"} == {4, 8}
    assert {c.get("precision") for c in held} >= {"fp32", "fp16", None} and {c.get("attn") for c in held} >= {"eager"}
    assert {c["ckpt"] for c in held} == {True, False}


def test_the_second_set_shares_no_configuration_with_what_the_estimate_was_fitted_or_checked_on(heldout):
    """heldout2: measured after the first set's traces changed the estimate (that set is no longer wholly out of
    sample), so none of its configurations may be in the calibration, the first set or the length rows."""
    cases = heldout.grid()
    seen = {configuration(c) for c in load("memory_validation").grid()}
    seen |= {configuration(c) for c in cases if c["group"] in ("heldout", "length")}
    second = [c for c in cases if c["group"] == "heldout2"]
    assert len(second) >= 40 and not [c for c in second if configuration(c) in seen]
    assert len({configuration(c) for c in second}) == len(second)  # no case twice
    assert {c["model"] for c in second} == {c["model"] for c in cases if c["group"] == "heldout"}  # every family
    assert {c["method"] for c in second} == {"full", "lora", "qlora", "ia3"}
    assert {c["batch"] for c in second} >= {1, 256} and {c["seq"] for c in second} >= {64, 2048}
    assert {c.get("bits", 4) for c in second if c["method"] == "qlora"} == {4, 8}
    assert {c.get("precision") for c in second} >= {None, "fp32", "fp16"}
    assert {c["ckpt"] for c in second} == {True, False}
    assert {c.get("attn") for c in second} >= {None, "eager"}
    (recheck,) = [c for c in cases if c["group"] == "recheck"]
    assert recheck == {**cases[16], "group": "recheck"}  # the 8-bit checkpointing case, after its fix


def test_every_case_ran_in_its_own_process_and_the_failure_is_named():
    raw = [json.loads(line) for line in ROWS.read_text().splitlines()]
    assert len({r["pid"] for r in raw}) == len(raw)
    failed = [r for r in raw if r["status"] != "completed"]
    assert [(r["case"], r["model"]) for r in failed] == [(38, "llama-3.2-1b")]  # fp32 LoRA on a bf16 checkpoint


def test_today_s_estimate_on_the_held_out_rows(heldout, rows):
    """The one "fits" left wrong is case 16, measured before the reentrant-checkpointing fix: the second set's
    recheck row measured the same config after it (+6.9%)."""
    held = heldout.summary([r for r in rows if not r["probe"] and r["group"] == "heldout"])
    assert held["cases"] == 45 and held["median_abs"] <= 2.1 and held["max_abs"] <= 34.0
    assert [r["case"] for r in rows if r["group"] == "heldout" and heldout.summary([r])["fits_but_exceeded"]] == [16]


def test_the_second_and_third_sets_with_today_s_estimate(heldout):
    """heldout2 and heldout3, each measured blind (their report_blind.md: median 2.2% / 2.7%, max 12.1% / 13.2%,
    "fits" wrong 3 / 1), then used: the phases' reuse term (fitted on the calibration rows), the 128-MB allowance
    (set from the held-out rows) and IA3's fp32 backward tensors (an allocator trace of a heldout2 miss) changed
    the estimate after them. Today's figures, which a change may only keep or improve: the largest, +9.3% and
    +8.8%, are over-estimates of runs with checkpointing."""
    second, third = heldout.recompute(ROWS2), heldout.recompute(ROWS3)
    s = heldout.summary([r for r in second if r["group"] == "heldout2"])
    assert s["cases"] == 44 and s["median_abs"] <= 1.8 and s["fits_but_exceeded"] == 0
    assert s["max_abs"] <= 9.4 and s["worst_under"] >= -5.8
    t = heldout.summary(third)
    assert t["cases"] == 42 and t["median_abs"] <= 2.3 and t["fits_but_exceeded"] == 0
    assert t["max_abs"] <= 8.9 and t["worst_under"] >= -7.3
    (recheck,) = [r for r in second if r["group"] == "recheck"]
    assert recheck["case"] == 112 and 0 <= recheck["error_now_pct"] <= 8.0  # case 16's config, after its fix


def test_the_fourth_set_measured_once_meets_issue_26_s_goals(heldout):
    """heldout4: measured once, after the last change to the estimate, 40 configurations none measured before:
    median |error| <= 3%, max <= 8%, and no run that measured more than the free memory "fits" would have asked
    (estimate + SAFETY_MB, over SAFETY_MARGIN). Measured: 1.7%, 6.4%, none."""
    rows = heldout.recompute(ROWS4)
    s = heldout.summary(rows)
    assert s["cases"] == 40 and s["median_abs"] <= 3.0 and s["max_abs"] <= 8.0 and s["fits_but_exceeded"] == 0
    raw = [json.loads(line) for line in ROWS4.read_text().splitlines()]
    assert len({r["pid"] for r in raw}) == len(raw) == 40  # every case its own process, none failed
    cases = [heldout.grid()[r["case"]] for r in rows]
    assert {c["model"] for c in cases} == {c["model"] for c in heldout.grid() if c["group"] == "heldout"}
    assert {c["method"] for c in cases} == {"full", "lora", "qlora", "ia3"} and {c["ckpt"] for c in cases} == {
        True, False}  # fmt: skip
    assert {c["batch"] for c in cases} >= {1, 256} and {c["seq"] for c in cases} >= {64, 2048}
    assert {c.get("bits", 4) for c in cases if c["method"] == "qlora"} == {4, 8}
    assert {c.get("precision") for c in cases} == {None, "fp32", "fp16"} and {c.get("attn") for c in cases} == {
        None, "eager"}  # fmt: skip


@pytest.mark.parametrize("group", ["heldout3", "heldout4"])
def test_each_later_set_measures_only_configurations_never_measured_before(heldout, group):
    cases = heldout.grid()
    first = min(i for i, c in enumerate(cases) if c["group"] == group)
    seen = {configuration(c) for c in load("memory_validation").grid()} | {configuration(c) for c in cases[:first]}
    new = [c for c in cases if c["group"] == group]
    assert len(new) >= 40 and not [c for c in new if configuration(c) in seen]
    assert len({configuration(c) for c in new}) == len(new)


def test_fits_is_never_wrong_on_a_calibration_row():
    validation = load("memory_validation")
    from studio.memory import SAFETY_MARGIN, SAFETY_MB

    over = [
        r["label"] for r in validation.recompute() if r["measured_mb"] > (r["estimate_mb"] + SAFETY_MB) / SAFETY_MARGIN
    ]
    assert not over


def test_every_length_row_is_within_4_percent_and_none_said_fits_wrongly(heldout, rows):
    """Attention's length scaling at 128-2048 tokens: sdpa's per-layer copy of the s x s padding mask (found in an
    H200 allocator trace of SmolLM2 at 2,048 tokens, -14.4% before) and DeBERTa's terms."""
    length = heldout.summary([r for r in rows if not r["probe"] and r["group"] == "length"])
    assert length["cases"] == 22 and length["max_abs"] <= 4.0 and length["fits_but_exceeded"] == 0


def test_deberta_s_attention_scales_with_length(heldout, rows):
    """The length rows: DeBERTa's disentangled attention at 128-2048 tokens (one per-score constant fitted at 256
    tokens was +21% to +77% over at 512-2048); with the span term and the per-sequence position copies every
    length is within 5%. The held-out DeBERTa LoRA rows, which the fit did not see, include the short one the
    allocator trace explained (64 x 64: -36% with one constant, -19% with the span term, now within 4%)."""
    deberta = [r for r in rows if r["group"] == "length" and r["model"] == "deberta-v3-base"]
    assert sorted({r["seq"] for r in deberta}) == [128, 512, 1024, 2048]
    assert all(abs(r["error_now_pct"]) <= 5.0 for r in deberta), [(r["case"], r["error_now_pct"]) for r in deberta]
    lora = [r for r in rows if r["group"] == "heldout" and r["model"] == "deberta-v3-base" and r["method"] == "lora"]
    assert {r["seq"] for r in lora} >= {64, 512}
    assert all(abs(r["error_now_pct"]) <= 4.0 for r in lora), [(r["case"], r["error_now_pct"]) for r in lora]


def test_the_probe_measures_what_the_run_does(rows):
    runs = {r["case"]: r["measured_mb"] for r in rows if not r["probe"]}
    probes = [r for r in rows if r["probe"]]
    assert len(probes) == 10
    assert all(-8.0 <= 100 * (p["measured_mb"] - runs[p["case"]]) / runs[p["case"]] <= 1.0 for p in probes)


def test_the_report_names_the_groups_and_the_failure(heldout):
    text = heldout.report(ROWS)
    assert "**heldout**: 45 cases" in text and "**length**: 22 cases" in text and "did not complete" in text
