"""How many decoding processes (DataLoader workers) a run may start, and how they end with their parent.

Each worker is a process with its own copy of what it touches (the image processor, a decoded image, its
read-ahead): measured at about 470 MB each on large photos. So ``--workers`` is bounded by what the
machine can hold and use: at most :data:`PER_CPU` workers per CPU this process may run on (decoding is
CPU work; the second one covers waits on a slow disk or network filesystem), and at most one per
:data:`WORKER_MEMORY` of the memory available now, both shared by the ``torchrun`` processes of one
machine. A larger number is refused in one line before any work; 100000 would otherwise fork until the
kernel's OOM killer stops the machine's other work too.

A worker must also never outlive the run: if the main process is killed (``kill -9``), the kernel sends
the worker SIGKILL (Linux ``PR_SET_PDEATHSIG``), and a thread in the worker ends it when its parent is
gone, where that is not available. This module imports nothing heavy (the tools check the flag before
torch is loaded).
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

from ..errors import FGDenseError

WORKER_MEMORY = 512 * 2**20  # bytes one worker may take (measured: ~470 MB on 48 MP photos)
PER_CPU = 2
PARENT_CHECK_S = 1.0  # how often a worker looks whether its parent is still there (the fallback)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_limit() -> int:
    """The most workers one process may start here (at least 1)."""
    limit = PER_CPU * cpus()
    memory = available_memory()
    if memory is not None:
        limit = min(limit, memory // WORKER_MEMORY)
    return max(1, limit // _processes_here())


def _processes_here() -> int:
    """The run's processes on this machine (``torchrun``'s LOCAL_WORLD_SIZE; 1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def check_workers(count: int, flag: str = "--workers") -> int:
    """``count`` if this machine can run that many workers, else :class:`FGDenseError` saying the bound."""
    limit = worker_limit()
    if count > limit:
        memory = available_memory()
        held = "" if memory is None else \
            f", {memory / 2**30:.1f} GiB of memory available at {WORKER_MEMORY // 2**20} MiB a worker"
        shared = _processes_here()
        per = f", shared by {shared} processes" if shared > 1 else ""
        raise FGDenseError(f"{flag} {count} is more than this machine can run: at most {limit} "
                           f"({PER_CPU} per CPU of {cpus()}{held}{per})")
    return count


def die_with_parent(parent: int) -> None:
    """Make this (worker) process end when ``parent`` does, however the parent ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watch below does it alone
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="fgdense-parent-watch", daemon=True).start()


__all__ = ["WORKER_MEMORY", "available_memory", "check_workers", "cpus", "die_with_parent", "worker_limit"]
