"""What the studio runs on: the device facts the memory estimate needs, and live usage for the monitor.

GPUs are read through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``), not torch: the UI asks at
start-up and on every estimate, and importing torch (or creating a CUDA context) would cost seconds and
hundreds of MB. Without NVML, or when it fails, the studio trains on the CPU and the facts are about RAM.
Sizes are MiB (2**20 bytes), called MB throughout the studio; "GB" in text is MB / 1024.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

_MB = 2**20


@dataclass(frozen=True)
class Device:
    """Where training would run. For ``cuda``, `name`, `total_mb` and `free_mb` are those of GPU 0 (the
    Trainer puts a full copy of the model on each GPU, so the first one is representative)."""

    kind: Literal["cuda", "cpu"]
    name: str
    total_mb: float
    free_mb: float
    count: int
    """Number of GPUs (0 on a CPU-only machine)."""


@functools.cache
def _nvml() -> Any | None:
    """The initialised pynvml module, or None when there is no usable NVIDIA driver (cached: init once)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
    except pynvml.NVMLError:
        return None
    return pynvml


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value  # older pynvml returns bytes


def _visible(nvml: Any) -> list[Any]:
    """NVML handles of the GPUs this process may use, in the order CUDA numbers them. NVML sees every GPU of the
    machine; CUDA_VISIBLE_DEVICES (indices or GPU-/MIG- UUIDs; empty or -1 for none) says which torch will see,
    and a process started with it empty trains on the CPU, so the estimate and the speed plan must see a CPU too.
    Like CUDA, the list ends at the first entry that names no device."""
    count = nvml.nvmlDeviceGetCount()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    handles = []
    for entry in (e.strip() for e in listed.split(",")):
        try:
            if entry.isdigit() and int(entry) < count:
                handles.append(nvml.nvmlDeviceGetHandleByIndex(int(entry)))
            elif entry.startswith(("GPU-", "MIG-")):
                handles.append(nvml.nvmlDeviceGetHandleByUUID(entry))
            else:
                break
        except nvml.NVMLError:
            break
    return handles


def detect() -> Device:
    """The first GPU this process may use (NVML, filtered by CUDA_VISIBLE_DEVICES), else the CPU with the RAM
    available now."""
    nvml = _nvml()
    if nvml is not None:
        try:
            visible = _visible(nvml)
            if visible:
                mem = nvml.nvmlDeviceGetMemoryInfo(visible[0])
                name = _text(nvml.nvmlDeviceGetName(visible[0]))
                return Device("cuda", name, mem.total / _MB, mem.free / _MB, len(visible))
        except nvml.NVMLError:
            pass
    ram = psutil.virtual_memory()
    return Device(kind="cpu", name=cpu_name(), total_mb=ram.total / _MB, free_mb=ram.available / _MB, count=0)


@functools.cache  # the precision of every run and estimate on a CPU asks; the CPU does not change
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Without it, torch's bf16 autocast on
    the CPU emulates every op: measured ~20x slower than fp32 on an AVX2 CPU (a small BERT's training step,
    1.5 s in fp32, 32 s in bf16). torch has no public check: its private ones, guarded."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    except (RuntimeError, AttributeError):
        return False


@functools.cache  # detect() runs on every knob change of the live estimate; the CPU's name does not change
def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip() or "CPU"
    except OSError:
        pass
    return platform.processor() or "CPU"


def monitor_sample(u: dict[str, Any]) -> dict[str, Any]:
    """One point of the live monitor's history from a `usage()` sample: time, CPU, the machine's RAM and this
    process's (the one a run in the app trains in), and the first GPU."""
    import time

    sample = {"time": time.time(), "cpu_pct": u.get("cpu_pct"), "ram_used_mb": u.get("ram_used_mb"),
              "process_rss_mb": u.get("process_rss_mb")}  # fmt: skip
    if u.get("gpu"):
        g = u["gpu"][0]
        sample.update(gpu_util_pct=g["util_pct"], gpu_mem_used_mb=g["mem_used_mb"])
    return sample


def usage() -> dict[str, Any]:
    """A sample for the live monitor: per-GPU load and memory (when there are GPUs), CPU and RAM always."""
    ram = psutil.virtual_memory()
    out: dict[str, Any] = {
        "cpu_pct": psutil.cpu_percent(interval=None),  # since the previous call: the monitor polls
        "ram_used_mb": (ram.total - ram.available) / _MB,
        "ram_total_mb": ram.total / _MB,
        "process_rss_mb": psutil.Process().memory_info().rss / _MB,
    }
    nvml = _nvml()
    if nvml is not None:
        with contextlib.suppress(nvml.NVMLError):
            if gpus := [_gpu_usage(nvml, i, handle) for i, handle in enumerate(_visible(nvml))]:
                out["gpu"] = gpus
    return out


def process_gpu_mb(index: int = 0) -> float | None:
    """This process's memory on GPU `index` as the driver counts it (nvidia-smi): CUDA context and kernels
    included. None where NVML cannot see the process (no driver; some containers hide PIDs)."""
    nvml = _nvml()
    if nvml is None:
        return None
    with contextlib.suppress(nvml.NVMLError, IndexError):
        handle = _visible(nvml)[index]  # `index` as torch numbers the GPUs it sees
        for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == os.getpid() and p.usedGpuMemory:
                return p.usedGpuMemory / 2**20
    return None


def _gpu_usage(nvml: Any, index: int, handle: Any) -> dict[str, Any]:
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    return {
        "index": index,
        "name": _text(nvml.nvmlDeviceGetName(handle)),
        "util_pct": float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        "mem_used_mb": mem.used / _MB,
        "mem_total_mb": mem.total / _MB,
    }


def describe(device: Device) -> str:
    """One line, e.g. 'NVIDIA H100 80GB HBM3 — 79.1 GB free of 80.0 GB'."""
    free, total = device.free_mb / 1024, device.total_mb / 1024
    if device.kind == "cpu":
        return f"CPU only (no GPU detected) — {free:.1f} GB RAM free of {total:.1f} GB"
    line = f"{device.name} — {free:.1f} GB free of {total:.1f} GB"
    return f"{device.count} x {line} on GPU 0" if device.count > 1 else line
