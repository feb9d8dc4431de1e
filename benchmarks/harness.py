"""What every benchmark shares: the machine a result is headed by, timing, peak memory, memory caps,
measurements in a fresh process, and random-weight models and inputs of the released architectures.

A measurement that must own its process's peak memory, or may run out of it, goes through
:func:`run_isolated`: it runs in a fresh Python process (``python -m benchmarks.harness MODULE:FUNCTION
SPEC``, from the repository root), so the process peak RSS, the only peak-memory figure a CPU offers,
belongs to that measurement alone, and running out of memory (an allocation error, a memory cap, or
the kernel's out-of-memory killer) ends one measurement, reported as "out of memory", instead of the
whole benchmark.

Speed and memory do not depend on weight values, so benchmarks run :func:`random_model`: the real
vision tower of a released size (:data:`fgdense.config.ARCHITECTURES`) with random weights.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

RESULT_MARKER = "FGDENSE_BENCHMARK_RESULT "
OUT_OF_MEMORY = "out of memory"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GIB = 1024**3
ROOT = Path(__file__).resolve().parents[1]  # the repository: children run from here

# ---------------------------------------------------------------------------------------------------
# Machine, timing, peak memory, memory caps
# ---------------------------------------------------------------------------------------------------


def _meminfo_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(device: torch.device | str) -> dict:
    """What a result table is headed by: the GPU model, or the CPU model and its cores."""
    device = torch.device(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "device": device.type,
        "cpu": _cpu_model(),
        "cpu_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "ram_bytes": _meminfo_total_bytes(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # the benchmark itself needs it; keep machine_info usable without
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    return info


def describe_machine(info: dict) -> str:
    """One line: 'NVIDIA H100 80GB HBM3 (79.1 GiB)' or 'CPU: AMD EPYC, 2 cores, 23.4 GiB RAM', plus versions."""
    if info.get("device") == "cuda" and info.get("gpu"):
        where = f"GPU: {info['gpu']} ({info['gpu_memory_bytes'] / GIB:.1f} GiB)"
    else:
        ram = f", {info['ram_bytes'] / GIB:.1f} GiB RAM" if info.get("ram_bytes") else ""
        where = f"CPU: {info.get('cpu', 'unknown')}, {info.get('cpu_cores')} cores ({info.get('torch_threads')} torch threads){ram}"
    versions = ", ".join(f"{name} {info[name]}" for name in ("torch", "transformers") if info.get(name))
    return f"{where}; {versions}" if versions else where


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device | str, warmup: int = 1, repeats: int = 5) -> list[float]:
    """Seconds per call of ``fn`` for each of ``repeats`` calls, after ``warmup`` untimed calls.

    The device is synchronised before and after every timed call, so GPU work queued by ``fn`` is
    counted where it runs.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a new peak-memory window: CUDA peak statistics, or the process's peak RSS (Linux)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # "5" resets the kernel's resident-set high-water mark (VmHWM) of this process
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak is the whole process's, model building included


def peak_memory_bytes(device: torch.device | str) -> int:
    """``torch.cuda.max_memory_allocated`` on a GPU, the process peak RSS on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # bytes on macOS, KiB on Linux


def cap_memory(device: torch.device | str, cap_bytes: int) -> None:
    """Make allocations beyond ``cap_bytes`` fail with an out-of-memory error (in this process only).

    On a GPU this caps the caching allocator; on a CPU the process's address space (RLIMIT_AS), which
    counts every mapping, libraries included, so it is a stricter cap than one on resident memory.
    """
    device = torch.device(device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total), device)
        return
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = cap_bytes if hard == resource.RLIM_INFINITY else min(cap_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_TORCH_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch.OutOfMemoryError: 2.5+
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "bad_alloc", "memoryerror")


def is_out_of_memory(error: BaseException | str) -> bool:
    """Whether an exception (or a child's stderr) says an allocation failed."""
    if isinstance(error, (MemoryError, _TORCH_OOM)):
        return True
    text = str(error).lower()
    return any(pattern in text for pattern in _OOM_TEXT)


def median_seconds(fn: Callable[[], object], device: torch.device | str, warmup: int = 1, repeats: int = 5) -> float:
    """The median of :func:`time_call`'s timings."""
    return statistics.median(time_call(fn, device, warmup, repeats))


def timed(fn: Callable[[], object], device: torch.device | str) -> tuple[object, float]:
    """``fn()`` and the seconds it took, the device synchronised before and after (one call, no warm-up)."""
    device = torch.device(device)
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - start


def current_memory_bytes(device: torch.device | str) -> int:
    """Memory held now: ``torch.cuda.memory_allocated`` on a GPU, the process RSS on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return (_proc_status_kib("VmRSS") or 0) * 1024


def format_bytes(count: float) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB else f"{count / 1024**2:.0f} MiB"


# ---------------------------------------------------------------------------------------------------
# Measurements in a fresh process
# ---------------------------------------------------------------------------------------------------


def measurement_name(measure: Callable[[dict], dict]) -> str:
    """``module:function`` of a measurement, as the child process imports it."""
    module, name = measure.__module__, measure.__qualname__
    if module == "__main__" or "." in name or "<" in name:
        raise ValueError(f"{name} must be a top-level function of an importable module (not of a script run "
                         "as __main__) to run in a child process")
    return f"{module}:{name}"


def run_isolated(measure: Callable[[dict], dict], spec: dict, timeout: float | None = None) -> dict:
    """Run ``measure(spec)`` in a fresh Python process and return its result dict.

    ``measure`` is a top-level function of a ``benchmarks`` module that returns a JSON-able dict.
    Never raises for what the child did: a child that ran out of memory, was killed, timed out or
    failed gives a result with ``status`` "out of memory", "timed out" or "error" and a ``detail``.
    """
    command = [sys.executable, "-m", "benchmarks.harness", measurement_name(measure), json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "detail": f"no result within {timeout:g} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    stderr = done.stderr.strip()
    last = stderr.splitlines()[-1] if stderr else f"exit status {done.returncode}"
    if done.returncode == -9:  # SIGKILL: on Linux almost always the out-of-memory killer
        return {"status": OUT_OF_MEMORY, "detail": "killed (SIGKILL), most likely by the out-of-memory killer"}
    if is_out_of_memory(stderr):
        return {"status": OUT_OF_MEMORY, "detail": last}
    return {"status": "error", "detail": last}


def _child_main(argv) -> int:
    """``python -m benchmarks.harness MODULE:FUNCTION SPEC_JSON``: one measurement, its result on stdout."""
    module, name = argv[0].split(":")
    measure = getattr(importlib.import_module(module), name)
    try:
        result = measure(json.loads(argv[1]))
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(error):
            raise
        result = {"status": OUT_OF_MEMORY, "detail": str(error).splitlines()[0][:300]}
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# Random-weight models and inputs
# ---------------------------------------------------------------------------------------------------

# The text tower of random_model: small, since the benchmarks built on it use the vision side only.
SMALL_TEXT_TOWER_VOCAB = 256


def describe_architecture(arch: str) -> str:
    """'base: 768 wide, 12 layers, 12 heads, MLP 3072'."""
    from fgdense.config import ARCHITECTURES

    return f"{arch}: {ARCHITECTURES[arch].describe()}"


def random_model(arch: str, device: torch.device | str, dtype: torch.dtype = torch.float32, seed: int = 0,
                 vocab_size: int = SMALL_TEXT_TOWER_VOCAB, text=None):
    """An FG-CLIP 2 model with the vision tower of ``arch`` (a name in :data:`fgdense.config.ARCHITECTURES`),
    a small text tower (or ``text``, an :class:`fgdense.config.Architecture`), and random weights, built
    directly in ``dtype`` on ``device``.

    Built on the meta device and filled in place: no second copy of the weights, no slow init.
    """
    from fgdense.config import Architecture, architecture_config
    from fgdense.model import FGCLIP2Model

    text = text or Architecture(hidden=64, layers=1, heads=2, mlp=128)
    with torch.device("meta"):
        model = FGCLIP2Model(architecture_config(arch, vocab_size, text=text))
    model = model.to(dtype=dtype).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.02, generator=generator)
            elif name.endswith("bias"):
                param.zero_()
            else:  # LayerNorm scales (and the logit scale, unused here)
                param.fill_(1.0)
    return model.eval()


def random_checkpoint(arch: str, folder, seed: int = 0) -> Path:
    """A checkpoint folder every tool loads (``--model FOLDER``): the vision tower of ``arch`` with random
    weights, a one-layer text tower of the same width (labels are encoded once per run, so its depth does
    not matter for speed), a small bilingual tokenizer and the released checkpoints' image processing."""
    from fgdense.config import ARCHITECTURES, Architecture
    from fgdense.model.weights import save_checkpoint
    from fgdense.processing import FGCLIP2ImageProcessor
    from fgdense.tiny import build_tokenizer

    size = ARCHITECTURES[arch]
    tokenizer = build_tokenizer()
    text = Architecture(hidden=size.hidden, layers=1, heads=size.heads, mlp=size.mlp)
    model = random_model(arch, "cpu", seed=seed, vocab_size=len(tokenizer), text=text)
    processor = FGCLIP2ImageProcessor(max_num_patches=256, dynamic_max_patches=True, patch_size=16, resample=2)
    return save_checkpoint(model, folder, tokenizer=tokenizer, processor=processor)


def square_grid(patches: int) -> tuple[int, int]:
    """The most square (h, w) patch grid with h * w <= ``patches`` (exactly square for 256 ... 16384)."""
    h = max(1, int(patches**0.5))
    return h, max(1, patches // h)


def random_inputs(patches: int, device, dtype=torch.float32, patch_size: int = 16, seed: int = 0):
    """Processor-like inputs of one image: ``patches`` rows (real ones first), mask, (h, w)."""
    h, w = square_grid(patches)
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(1, patches, 3 * patch_size * patch_size, generator=generator) * 2 - 1
    values[:, h * w:] = 0  # padding rows, as the processor writes them
    mask = torch.zeros(1, patches, dtype=torch.long)
    mask[:, : h * w] = 1
    return values.to(device, dtype), mask.to(device), torch.tensor([[h, w]], device=device)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
