"""The processes of a ``torchrun`` launch: which one this is, its device, and the few collective steps a run needs.

The one module that joins or asks ``torch.distributed`` (bulk runs, evaluations and stage-2 training all
come here); only the SigLIP loss's gradient-carrying gather, part of the training objective's maths,
calls it on its own.

``torchrun`` (one node or several: ``--nnodes``, ``--rdzv-endpoint``) starts the processes and sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; this module only joins them: gloo on CPUs, nccl on GPUs with
one GPU per process (``cuda:LOCAL_RANK``). Without ``torchrun`` a run is one process and nothing here
talks to anyone.

Processes meet only at the end of a run (to merge counts and the COCO file), so the process group gets a
long timeout: a process whose share was mostly done by an earlier run waits for the others' real work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

from ..errors import FGDenseError

WAIT_FOR_OTHERS = timedelta(days=7)


class PeerStopped(FGDenseError):
    """Another process of the run stopped (its own line says why), so this one cannot meet it and stops too."""

    def __init__(self):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else "?"
        super().__init__(f"rank {rank}: another process of this torchrun run stopped (its line says why); "
                         "this process stops too, every file it wrote is complete")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world}" if self.world > 1 else "one process"


def launched_world() -> int:
    """How many processes ``torchrun`` started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device: torch.device) -> tuple[torch.device, Ranks]:
    """Join the ``torchrun`` process group, if there is one: this process's device and place in it."""
    world = launched_world()
    if world <= 1:
        return device, Ranks()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=WAIT_FOR_OTHERS)
    return device, Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(), local)


def join_cpu() -> None:
    """Join the process group with gloo, for a CPU-only training run under ``torchrun`` (mmengine would
    ask CUDA for a device); nothing if a group is joined already."""
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="gloo")


def current() -> Ranks:
    """This process's place in a process group already joined (by :func:`join`, mmengine, a user), else one process."""
    if not active():
        return Ranks()
    return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", "0")))


def leave() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def active() -> bool:
    """Whether this process is one of several in a joined process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def barrier() -> None:
    if active():
        try:
            torch.distributed.barrier()
        except RuntimeError:
            raise PeerStopped() from None


def gather(value) -> list:
    """``value`` of every process, in rank order (every process gets the list)."""
    if not active():
        return [value]
    values = [None] * torch.distributed.get_world_size()
    try:
        torch.distributed.all_gather_object(values, value)
    except RuntimeError:  # gloo/nccl's "Connection closed by peer" and the like: another process has stopped
        raise PeerStopped() from None
    return values


__all__ = ["PeerStopped", "Ranks", "active", "barrier", "current", "gather", "join", "join_cpu", "launched_world", "leave"]
