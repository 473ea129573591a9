"""benchmarks/memory_peak.py: the peak of a torch allocator history and what was alive at it, on a history made
here (no GPU: the snapshot is plain data)."""

from __future__ import annotations

import gzip
import pickle
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory_peak import peak, where  # noqa: E402

MB = 2**20
LORA = [{"filename": "/x/torch/nn/functional.py", "line": 1, "name": "linear"},
        {"filename": "/x/site-packages/peft/tuners/lora/layer.py", "line": 700, "name": "forward"}]  # fmt: skip
INT8 = [{"filename": "/x/site-packages/bitsandbytes/autograd/_functions.py", "line": 120, "name": "forward"}]
BARE = [{"filename": "/x/site-packages/torch/optim/adamw.py", "line": 9, "name": "step"}]


def ev(action: str, addr: int, mb: int, frames: list | None = None) -> dict:
    return {"action": action, "addr": addr, "size": mb * MB, "frames": frames or []}


def history() -> dict:
    trace = [ev("segment_alloc", 1000, 64), ev("alloc", 1, 10, LORA), ev("alloc", 2, 20, INT8),
             ev("free_requested", 2, 20), ev("free_completed", 2, 20), ev("alloc", 3, 25, INT8),
             ev("alloc", 4, 5, BARE),  # the peak: 10 + 25 + 5 = 40 MB
             ev("free_completed", 3, 25), ev("segment_alloc", 2000, 32), ev("alloc", 5, 20, LORA),
             ev("segment_free", 2000, 32)]  # fmt: skip
    return {"segments": [], "device_traces": [trace]}


def test_the_peak_and_what_it_holds_by_place():
    p = peak(history())
    assert (p.allocated_mb, p.reserved_mb, p.events) == (40, 96, 11)
    assert p.live_at_peak == {where(LORA): 10, where(INT8): 25, where(BARE): 5}
    assert where(LORA) == "peft/tuners/lora/layer.py:700 forward"  # the model library's frame, not torch's
    assert where(BARE) == "torch/optim/adamw.py:9 step" and where([]) == "(no stack)"
    table = p.lines(top=2)
    assert table[0].startswith("peak allocated 40 MB, peak reserved 96 MB")
    assert table[4].startswith("| bitsandbytes/autograd/_functions.py:120 forward | 25.0")
    assert table[-1] == "| (1 more places) | 5.0 |"


def test_the_command_reads_a_gzipped_history(tmp_path):
    path = tmp_path / "case.pickle.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(history(), f)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory_peak.py"), str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "peak allocated 40 MB" in out and "peft/tuners/lora/layer.py:700 forward | 10.0" in out
