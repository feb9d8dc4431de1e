"""Devices and numeric precision: one place that turns ``"auto"``, ``"cuda:1"``, ``"bf16"`` into torch terms;
and how the DataLoader worker processes that feed a device behave.

A request this machine cannot honour (``cuda`` without CUDA, a GPU index that does not exist) is a
:class:`~fgdense.errors.DeviceError` naming it, from the library as from the tools.
"""

from __future__ import annotations

import contextlib
import os
import signal

import torch

from .errors import DeviceError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto``/``None`` -> CUDA when available, else CPU; anything else is checked against this machine."""
    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available on this machine "
                              "(use device='cpu' or 'auto')")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
    elif device.type != "cpu":
        raise DeviceError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


# Overrides what ``auto`` means on a CPU: "fp32" or "bf16" (for comparisons, and the test suite's exact checks).
CPU_AUTO_ENV = "FGDENSE_CPU_AUTO_PRECISION"


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX).

    Measured (docs/benchmarks.md, "Precision"): bf16 autocast took 0.58-0.85x fp32's time on a Xeon with AMX
    and 0.99-1.05x on an EPYC with AVX512-BF16 alone, so AVX512-BF16 without AMX is not enough.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # an old or unusual build: keep fp32
        return False


def auto_precision(device: torch.device, dtype: torch.dtype) -> str:
    """What ``--precision auto`` means for a model of ``dtype`` on ``device``: bf16 autocast over fp32
    weights on CUDA and on CPUs with bf16 matrix units, the model's own precision elsewhere."""
    if dtype != torch.float32:
        return "fp32"
    if device.type == "cuda":
        return "bf16"
    if device.type == "cpu":
        forced = os.environ.get(CPU_AUTO_ENV, "").strip().lower()
        if forced in ("fp32", "bf16"):
            return forced
        return "bf16" if cpu_has_bf16_matrix_units() else "fp32"
    return "fp32"


def autocast(model, precision: str = "auto"):
    """The context a forward pass of ``model`` runs in for ``precision``.

    ``auto``: :func:`auto_precision` (bf16 autocast on CUDA and on CPUs with AMX for an fp32 model: LayerNorm
    and softmax stay fp32 under autocast; the model's own precision elsewhere). ``fp32``: the model's own
    precision (fp32 for a model loaded the default way). ``bf16`` / ``fp16``: autocast to that type on any
    device.
    """
    check_precision(precision)
    device = model.device
    if precision == "auto":
        precision = auto_precision(device, model.dtype)
    if precision in ("bf16", "fp16"):
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def quiet_worker(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn`` that leaves Ctrl-C to the main process, which reports it in one line.

    The workers ignore SIGINT (the main process shuts them down), and share tensors by file name instead of
    by passing file descriptors: the descriptor server thread of a worker prints a traceback when the main
    process stops in the middle of a hand-over, which Ctrl-C does.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.multiprocessing.set_sharing_strategy("file_system")
