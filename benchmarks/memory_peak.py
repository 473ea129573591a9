"""What a CUDA process's memory holds at its peak, from a snapshot of torch's allocator history.

    python benchmarks/memory_peak.py SNAPSHOT.pickle[.gz] [--top 25]

The snapshot is what `torch.cuda.memory._record_memory_history(stacks="python")` records and
`torch.cuda.memory._snapshot()` returns (benchmarks/memory_heldout.py --snapshot writes one per case). torch's own
viewer (pytorch.org/memory_viz) draws it; this prints the numbers the memory estimate is checked against:

- the peak of allocated memory (what tensors hold) and of reserved memory (the allocator's segments: what
  nvidia-smi sees beyond the CUDA context), each replayed from the trace;
- the tensors alive at the allocated peak, summed by where they were allocated: the innermost frame in a library
  that models are written in (transformers, peft, bitsandbytes, accelerate) or in the studio, else the innermost
  frame of the stack, so a term the estimate misses shows as a line of its own.

Written by hand because torch ships only the interactive viewer and its plot helpers, not a peak breakdown.
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

MB = 2**20
WHERE = ("/transformers/", "/peft/", "/bitsandbytes/", "/accelerate/", "/studio/")


@dataclass
class Peak:
    allocated_mb: float
    reserved_mb: float
    live_at_peak: dict[str, float] = field(default_factory=dict)  # where allocated -> MB alive at the allocated peak
    events: int = 0

    def lines(self, top: int = 25) -> list[str]:
        out = [f"peak allocated {self.allocated_mb:,.0f} MB, peak reserved {self.reserved_mb:,.0f} MB "
               f"({self.events:,} allocator events)", "", "| allocated at | MB alive at the peak |",
               "|---|---:|"]  # fmt: skip
        ranked = sorted(self.live_at_peak.items(), key=lambda kv: -kv[1])
        out += [f"| {where} | {mb:,.1f} |" for where, mb in ranked[:top]]
        rest = sum(mb for _, mb in ranked[top:])
        if rest:
            out.append(f"| ({len(ranked) - top} more places) | {rest:,.1f} |")
        return out


def where(frames: list[dict]) -> str:
    """The allocation's place: the innermost frame in a model library or the studio, else the innermost one."""
    for f in frames:
        name = f.get("filename", "")
        if any(w in name for w in WHERE):
            tail = name.split("site-packages/")[-1].split("/work/main/")[-1]
            return f"{tail}:{f.get('line')} {f.get('name')}"
    if frames:
        f = frames[0]
        return f"{f.get('filename', '?').split('site-packages/')[-1]}:{f.get('line')} {f.get('name')}"
    return "(no stack)"


def peak(snapshot: dict, device: int = 0) -> Peak:
    """Replay the device's trace: the allocated and reserved peaks, and what was alive at the allocated one.
    Blocks allocated before the recording began are not in the trace and not counted."""
    trace = snapshot["device_traces"][device]
    allocated = reserved = top_alloc = top_reserved = 0
    at = -1
    for i, e in enumerate(trace):
        action, size = e["action"], e["size"]
        if action == "alloc":
            allocated += size
            if allocated > top_alloc:
                top_alloc, at = allocated, i
        elif action == "free_completed":
            allocated -= size
        elif action in ("segment_alloc", "segment_map"):
            reserved += size
            top_reserved = max(top_reserved, reserved)
        elif action in ("segment_free", "segment_unmap"):
            reserved -= size
    live: dict[int, tuple[int, str]] = {}
    for e in trace[: at + 1]:
        if e["action"] == "alloc":
            live[e["addr"]] = (e["size"], where(e.get("frames") or []))
        elif e["action"] == "free_completed":
            live.pop(e["addr"], None)
    by_place: dict[str, float] = defaultdict(float)
    for size, place in live.values():
        by_place[place] += size / MB
    return Peak(top_alloc / MB, top_reserved / MB, dict(by_place), len(trace))


def load(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return pickle.load(f)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print("\n".join(peak(load(args.snapshot)).lines(args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
