"""Classification metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from studio.metrics import PeakMemory, classification_metrics, full_report, softmax


def test_metrics_match_hand_computation():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 1, 0])
    m = classification_metrics(labels, preds, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class F1: a: p=2/3 r=2/3 -> 2/3; b: p=2/3 r=1 -> 0.8; c: 0
    assert m["f1/a"] == pytest.approx(2 / 3) and m["f1/b"] == pytest.approx(0.8) and m["f1/c"] == 0
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 3)
    assert m["f1_weighted"] == pytest.approx((3 * 2 / 3 + 2 * 0.8) / 6)


def test_full_report_has_confusion_matrix_rows_true_columns_predicted():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    report = full_report(np.array([0, 0, 1, 1]), logits, ["neg", "pos"])
    assert report["confusion_matrix"] == [[1, 1], [1, 1]]
    assert report["per_class"]["neg"]["support"] == 2 and report["n"] == 4
    assert report["accuracy"] == 0.5


def test_softmax_rows_sum_to_one_and_are_stable():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])


def test_peak_memory_reports_process_rss_on_cpu():
    meter = PeakMemory()
    block = bytearray(64 * 2**20)  # 64 MiB, touched
    block[::4096] = b"x" * len(block[::4096])
    meter.sample()
    result = meter.result()
    assert result["peak_memory_kind"] == "process_rss" and result["peak_memory_mb"] > 64


@pytest.mark.parametrize(("nvml_mb", "context_mb"), [(1700.0, 700.0), (None, 760.0)])
def test_peak_on_a_gpu_counts_the_reserve_and_the_cuda_context(monkeypatch, nvml_mb, context_mb):
    # The estimate is validated against what must fit on the device: torch's peak reserve plus the context
    # NVML sees beyond it (or the measured constant where NVML cannot see the process).
    import torch

    from studio import hardware

    mib = 2**20
    for name, value in {"is_available": True, "reset_peak_memory_stats": None, "current_device": 0,
                        "memory_reserved": 1000 * mib, "max_memory_allocated": 800 * mib,
                        "max_memory_reserved": 1100 * mib}.items():  # fmt: skip
        monkeypatch.setattr(torch.cuda, name, lambda *a, v=value: v)
    monkeypatch.setattr(hardware, "process_gpu_mb", lambda index=0: nvml_mb)
    out = PeakMemory().result()
    assert (out["peak_memory_mb"], out["peak_memory_kind"]) == (800.0, "cuda_allocated")
    assert out["peak_reserved_mb"] == 1100.0 and out["peak_device_mb"] == 1100.0 + context_mb
