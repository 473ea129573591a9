"""One run across several processes (GPUs): what a `Run` needs to know when torchrun or accelerate launched it.

The engines are torch DDP through the HF Trainer (accelerate underneath): each process trains on its share
of every batch and the gradients are averaged. The studio adds only what its own bookkeeping needs:

- rank 0 writes: the registry row, the run folder, metrics.jsonl, the saved model and eval.json; the other
  ranks train, evaluate and keep their events to themselves (`World.writes`);
- the run's row rank 0 created reaches the others (`broadcast`), who need the folder for the Trainer's
  checkpoints: they never open the registry (on a server database that would be a connection per GPU);
- data preparation and tokenization run on rank 0 first, then on the others from its cache (`main_first`);
- a stop (the UI's button, `python -m studio stop`, Ctrl-C) reaches every rank at the same step (`any_rank`),
  or the ranks would wait for each other for ever;
- the effective batch the config asks for (batch_size x grad_accum) is kept: the accumulation, else the
  per-device batch, is divided among the processes (`layout`).

Launch: ``python -m studio train PRESET --gpus N`` starts torchrun itself (`studio.launch`); ``accelerate launch
--num_processes N -m studio train PRESET`` and ``torchrun --nproc_per_node N -m studio train PRESET`` work as
they are (docs/multi_gpu.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from studio.errors import StudioError


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files and registry row (rank 0 only)."""
        return self.rank == 0


def world() -> World:
    """This process's place, from the variables torchrun and accelerate launch set (none: one process)."""
    env = os.environ
    size = int(env.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", env.get("RANK", "0"))), size)


def setup(w: World) -> None:
    """Join the process group (accelerate's PartialState: NCCL on GPUs, gloo on CPUs) and select this
    process's GPU in the calling thread: CUDA's current device is per thread, and a run trains in its own
    thread, where 4-bit loading places the model on the current device."""
    if not w.distributed:
        return
    import torch
    from accelerate import PartialState

    PartialState()
    if torch.cuda.is_available():
        torch.cuda.set_device(w.local_rank)


def broadcast(w: World, value: Any) -> Any:
    """Rank 0's `value`, on every rank (a picklable object)."""
    if not w.distributed:
        return value
    import torch.distributed as dist

    box = [value if w.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(w: World, flag: bool) -> bool:
    """True on every rank when `flag` is true on any (a collective: every rank must call it at the same step)."""
    if not w.distributed:
        return flag
    import torch
    import torch.distributed as dist

    device = f"cuda:{w.local_rank}" if torch.cuda.is_available() else "cpu"
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@contextlib.contextmanager
def main_first(w: World) -> Iterator[None]:
    """Rank 0 runs the block first (it fills the caches), then the others. A failure on rank 0 still releases
    the others, who then fail the same way on the same input rather than wait for ever."""
    if not w.distributed:
        yield
        return
    import torch.distributed as dist

    if w.rank != 0:
        dist.barrier()
    try:
        yield
    finally:
        if w.rank == 0:
            dist.barrier()


def layout(batch_size: int, grad_accum: int, processes: int) -> tuple[int, int, str | None]:
    """(per-device batch, accumulation steps, note) that keep the effective batch batch_size x grad_accum on
    `processes` processes: the accumulation is divided first (each device keeps the batch it was sized for),
    else the per-device batch; when neither divides, the effective batch grows by `processes` and the note
    says so."""
    if processes <= 1:
        return batch_size, grad_accum, None
    if grad_accum % processes == 0:
        return batch_size, grad_accum // processes, None
    if batch_size % processes == 0:
        return batch_size // processes, grad_accum, None
    effective = batch_size * grad_accum
    return (
        batch_size,
        grad_accum,
        (
            f"effective batch {effective} (batch_size {batch_size} x grad_accum {grad_accum}) does not divide among "
            f"{processes} processes: it is {effective * processes} on {processes} GPUs; make batch_size or grad_accum "
            f"a multiple of {processes} to keep it"
        ),
    )


def fsdp_requested() -> bool:
    """Whether accelerate launched this process with an FSDP config (presets/accelerate/fsdp_full.yaml)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def cpu_processes_allowed() -> bool:
    """STUDIO_DDP_ON_CPU=1: on a machine without GPUs, "N GPUs" means N CPU processes (gloo). Slower than
    one; it is how the tests (and a user without GPUs) check the multi-process path."""
    return os.environ.get("STUDIO_DDP_ON_CPU") == "1"


def gpu_count() -> int:
    """GPUs this process may use (NVML, so asking does not initialise CUDA in a server process)."""
    from studio.hardware import detect

    device = detect()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return min(device.count, len([v for v in visible.split(",") if v.strip()]))
    return device.count


def require_gpus(processes: int, field: str) -> None:
    """Refuse `processes` > the GPUs visible here (`field` names the setting in the message); on a machine
    without GPUs, CPU processes when cpu_processes_allowed()."""
    available = gpu_count()
    if available >= processes or (available == 0 and cpu_processes_allowed()):
        return
    if available:
        raise StudioError(f"{field}: {processes} GPUs asked, this machine has {available}; ask for at most {available}")
    raise StudioError(f"{field}: this machine has no GPU; ask for 1 (the run trains on the CPU)")


def process_choices() -> list[int]:
    """How many GPUs a run may train on here: 1 .. the GPUs visible ([1, 2] on a CPU-only machine that allows
    CPU processes)."""
    count = gpu_count()
    if count == 0 and cpu_processes_allowed():
        count = 2
    return list(range(1, max(count, 1) + 1))
