"""Device detection and live usage: this machine (CPU), a fake NVML with two GPUs, and NVML failing."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from studio import hardware
from studio.hardware import Device, describe, detect, usage

GIB = 2**30


@pytest.fixture(autouse=True)
def _fresh_nvml():
    """NVML's init is cached per process: start and end every test without it."""
    hardware._nvml.cache_clear()
    yield
    hardware._nvml.cache_clear()


def fake_pynvml(fail_init: bool = False) -> types.ModuleType:
    """Two 80 GB GPUs; GPU i has i+1 GB used and 37+i % load. Names come as bytes, like older pynvml."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        if fail_init:
            raise NVMLError("Driver Not Loaded")

    nvml.NVMLError = NVMLError
    nvml.nvmlInit = init
    nvml.nvmlDeviceGetCount = lambda: 2
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetHandleByUUID = lambda u: {"GPU-aaaa": 0, "GPU-bbbb": 1}[u]
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(total=80 * GIB, free=(79 - h) * GIB, used=(1 + h) * GIB)
    nvml.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=37 + h, memory=5)
    return nvml


def test_this_machine_is_a_cpu_with_ram():
    if hardware._nvml() is not None:
        pytest.skip("this machine has an NVIDIA GPU")
    device = detect()
    assert device.kind == "cpu" and device.count == 0 and device.name
    assert 0 < device.free_mb <= device.total_mb
    assert describe(device).startswith("CPU only (no GPU detected) — ")


def test_usage_always_reports_cpu_ram_and_this_process():
    sample = usage()
    assert {"cpu_pct", "ram_used_mb", "ram_total_mb", "process_rss_mb"} <= set(sample)
    assert 0 < sample["ram_used_mb"] < sample["ram_total_mb"] and sample["process_rss_mb"] > 0
    assert 0 <= sample["cpu_pct"] <= 100


def test_a_gpu_seen_through_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    device = detect()
    assert device == Device(kind="cuda", name="NVIDIA H100 80GB HBM3", total_mb=80 * 1024, free_mb=79 * 1024, count=2)
    assert describe(device) == "2 x NVIDIA H100 80GB HBM3 — 79.0 GB free of 80.0 GB on GPU 0"
    one = Device("cuda", "NVIDIA H100 80GB HBM3", 80 * 1024, 79.1 * 1024, 1)
    assert describe(one) == "NVIDIA H100 80GB HBM3 — 79.1 GB free of 80.0 GB"

    gpus = usage()["gpu"]
    assert gpus == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "util_pct": 37.0, "mem_used_mb": 1024, "mem_total_mb": 80 * 1024},
        {"index": 1, "name": "NVIDIA H100 80GB HBM3", "util_pct": 38.0, "mem_used_mb": 2048, "mem_total_mb": 80 * 1024},
    ]


@pytest.mark.parametrize(
    ("visible", "free_gb", "count"),
    [("", None, 0), ("-1", None, 0), ("1", 78, 1), ("GPU-bbbb", 78, 1), ("1,0", 78, 2), ("0,7,1", 79, 1)],
)
def test_cuda_visible_devices_is_what_the_estimate_sees(monkeypatch, visible, free_gb, count):
    """NVML lists every GPU of the machine; a process started with CUDA_VISIBLE_DEVICES empty trains on the CPU,
    so the estimate and the speed plan must plan for the CPU (the quick demo, timed on a GPU host's CPU with it
    empty, got the GPU's fast-profile batch). A list is read as CUDA reads it, up to the first unknown entry."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    device = detect()
    assert device.count == count
    if free_gb is None:
        assert device.kind == "cpu" and "gpu" not in usage()
    else:
        assert device.kind == "cuda" and device.free_mb == free_gb * 1024
        assert [g["index"] for g in usage()["gpu"]] == list(range(count))  # numbered as torch numbers them


def test_nvml_failing_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    assert detect().kind == "cpu"
    assert "gpu" not in usage()


def test_no_nvml_library_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    assert detect().kind == "cpu"


def test_detect_does_not_import_torch():
    import subprocess

    code = "import sys, studio.hardware as h; h.detect(); h.usage(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
