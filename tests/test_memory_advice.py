"""Suggestions when a config is too big: each fits, the least costly first."""

from __future__ import annotations

from studio.config import RunConfig
from studio.hardware import Device
from studio.memory import estimate
from studio.memory_advice import format_suggestions, suggestions

SMALL = Device(kind="cuda", name="small GPU", total_mb=4096, free_mb=2500, count=1)
MID = Device(kind="cuda", name="mid GPU", total_mb=6144, free_mb=4600, count=1)


def bert_base(**train) -> RunConfig:
    return RunConfig.from_dict({"model": {"name": "bert-base"}, "method": {"name": "full"},
                                "data": {"max_length": 512}, "train": {"batch_size": 32, **train}})  # fmt: skip


def test_single_changes_that_fit_are_true_and_the_least_costly_first():
    config = bert_base()  # bert-base full FT, 32 x 512 tokens: ~8.5 GB
    assert not estimate(config, device=MID).fits
    items = suggestions(config, device=MID)
    assert len(items) >= 2
    batches = [s for s in items if s.overrides[0].startswith("train.batch_size")]
    # one batch size, the largest that fits (not also 1 x 32, which fits too), offered first
    assert len(batches) == 1 and items[0] is batches[0]
    larger = int(batches[0].overrides[0].split("=")[1]) * 2
    with_accum = [f"train.batch_size={larger}", f"train.grad_accum={32 // larger}"]
    assert larger == 32 or not estimate(config.with_overrides(with_accum), device=MID).fits
    assert len([s for s in items if s.overrides[0].startswith("data.max_length")]) <= 1
    for s in items:  # each suggestion is what it says: the config with its overrides fits
        assert estimate(config.with_overrides(s.overrides), device=MID).fits
        assert s.total_mb < estimate(config, device=MID).total_mb
    assert any("checkpointing" in s.change for s in items)
    for s in [s for s in items if s.overrides[0].startswith("train.batch_size")]:
        batch, accum = (int(o.split("=")[1]) for o in s.overrides)
        assert batch * accum >= 32  # a smaller batch keeps the effective batch with gradient accumulation
    assert "--set train.gradient_checkpointing=true" in format_suggestions(items)


def test_a_huge_batch_is_advised_the_largest_batch_that_fits_first_not_batch_1():
    """Batch 4096 where ~100 fit: the first suggestion is the largest batch that fits with the accumulation that
    keeps the effective batch exactly (a divisor of 4096), not 1 x 4096, nor a halving of 4096 that cannot fit."""
    config = bert_base(batch_size=4096, grad_accum=1).with_overrides(["data.max_length=128"])
    largest = estimate(config, device=MID).largest_batch
    items = suggestions(config, device=MID)
    batch, accum = (int(o.split("=")[1]) for o in items[0].overrides)
    assert items[0].overrides[0].startswith("train.batch_size") and "effective batch, 4096" in items[0].change
    assert 8 <= batch <= largest and batch * accum == 4096
    assert estimate(config.with_overrides(items[0].overrides), device=MID).fits
    twice = [f"train.batch_size={batch * 2}", f"train.grad_accum={accum // 2}"]
    assert not estimate(config.with_overrides(twice), device=MID).fits
    assert len([s for s in items if s.overrides[0].startswith("train.batch_size")]) == 1


def test_a_combination_when_no_single_change_is_enough():
    config = bert_base()
    (combo,) = suggestions(config, device=SMALL)
    assert " + " in combo.change and len(combo.overrides) >= 3
    assert estimate(config.with_overrides(combo.overrides), device=SMALL).fits


def test_no_suggestions_when_it_fits():
    assert suggestions(bert_base(batch_size=1), device=Device("cuda", "H100", 81559, 80000, 1)) == []
