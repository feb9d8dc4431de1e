"""Benchmarks: timing and peak-memory helpers, and the dense-feature benchmark built on them.

Every configuration is measured in a fresh Python process (``python -m fgdense.benchmarking SPEC``):
the process peak RSS, the only peak-memory figure a CPU offers, then belongs to that configuration
alone, and running out of memory (an allocation error, a memory cap, or the kernel's out-of-memory
killer) ends one measurement, reported as "out of memory", instead of the whole benchmark.

The dense benchmark compares fgdense's fast path (:func:`fgdense.dense.dense_grids`) with a faithful
re-implementation of the official formulation (:func:`official_dense_features`) on the real FG-CLIP 2
vision architectures with random weights: speed and memory do not depend on the weight values.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

RESULT_MARKER = "FGDENSE_BENCHMARK_RESULT "
OUT_OF_MEMORY = "out of memory"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GIB = 1024**3

# ---------------------------------------------------------------------------------------------------
# Generic helpers: machine, timing, peak memory, memory caps, isolated runs
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


def run_isolated(spec: dict, timeout: float | None = None) -> dict:
    """Run one measurement ``spec`` in a fresh Python process and return its result dict.

    Never raises for what the child did: a child that ran out of memory, was killed, timed out or
    failed gives a result with ``status`` "out of memory", "timed out" or "error" and a ``detail``.
    """
    command = [sys.executable, "-m", "fgdense.benchmarking", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
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


# ---------------------------------------------------------------------------------------------------
# The dense-feature benchmark
# ---------------------------------------------------------------------------------------------------

# Vision towers of the released checkpoints (patch 16, 16x16 position grid). "tiny" is for tests.
ARCHITECTURES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "so400m": dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
}
PATHS = ("fast", "official")


def describe_architecture(arch: str) -> str:
    a = ARCHITECTURES[arch]
    return (f"{arch}: {a['hidden_size']} wide, {a['num_hidden_layers']} layers, "
            f"{a['num_attention_heads']} heads, MLP {a['intermediate_size']}")


def benchmark_config(arch: str):
    """An FG-CLIP 2 config with the real vision tower of ``arch`` and a small text tower (unused here)."""
    from .model.config import FGCLIP2Config

    vision = dict(ARCHITECTURES[arch], patch_size=16, num_patches=256, num_channels=3,
                  hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=256, max_position_embeddings=64, projection_size=64)
    return FGCLIP2Config(text, vision)


def random_model(arch: str, device: torch.device | str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """An FG-CLIP 2 model of architecture ``arch`` with random weights, built directly in ``dtype``.

    Built on the meta device and filled in place: no second copy of the weights, no slow init.
    """
    from .model.modeling import FGCLIP2Model

    with torch.device("meta"):
        model = FGCLIP2Model(benchmark_config(arch))
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


def _official_4d_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, N, N) additive float mask, as transformers 4.57's ``_prepare_4d_attention_mask`` built it."""
    batch, length = mask.shape
    expanded = mask[:, None, None, :].expand(batch, 1, length, length).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


@torch.no_grad()
def official_dense_features(model, pixel_values, pixel_attention_mask, spatial_shapes) -> torch.Tensor:
    """FG-CLIP 2's official ``get_image_dense_feature``, computed the way the official code computes it.

    Under transformers 4.57 the vision tower turned the 2D padding mask into a (B, 1, N, N) float mask
    for its SDPA layers (transformers 5 would drop an all-ones mask, so the 4D mask is built here
    explicitly), the pooling head ran too, and the dense head is ``nn.MultiheadAttention`` with a
    repeated (B * heads, N, N) mask and attention weights returned (:func:`dense_head_reference`).
    Returns (B, N, D), padding rows included.
    """
    from .model.dense_head import dense_head_reference

    vision = model.vision_model
    hidden = vision.embeddings(pixel_values.to(model.dtype), spatial_shapes)
    mask_4d = _official_4d_mask(pixel_attention_mask, hidden.dtype)
    hidden = vision.encoder(inputs_embeds=hidden, attention_mask=mask_4d).last_hidden_state
    hidden = vision.post_layernorm(hidden)
    vision.head(hidden, pixel_attention_mask)  # the official forward computes the pooled output as well
    return dense_head_reference(model.dense_feature_head, hidden, pixel_attention_mask)


def _dense_call(model, path: str, patches: int, device, dtype):
    """A no-argument function computing one image's dense features at ``patches`` by ``path``."""
    from .dense import dense_grids

    values, mask, shapes = random_inputs(patches, device, dtype)
    if path == "fast":
        # precision="model": both paths run in the weights' dtype, the same arithmetic.
        return lambda: dense_grids(model, values, shapes, max_batch_tokens=patches, precision="model")
    return lambda: official_dense_features(model, values, mask, shapes)


def measure_dense(spec: dict) -> dict:
    """One configuration (arch, patches, path, device, dtype, warmup, repeats, memory cap): a result dict.

    Meant to run in its own process (see :func:`run_isolated`): it caps this process's memory.
    """
    device = torch.device(spec["device"])
    result = {"machine": machine_info(device)}
    dtype = DTYPES[spec["dtype"]]
    model = random_model(spec["arch"], device, dtype)
    # A tiny run first: lazy imports, thread pools and kernels get set up before any memory cap.
    _dense_call(model, spec["path"], 4, device, dtype)()
    call = _dense_call(model, spec["path"], spec["patches"], device, dtype)
    synchronize(device)
    result["baseline_bytes"] = (torch.cuda.memory_allocated(device) if device.type == "cuda"
                                else (_proc_status_kib("VmRSS") or 0) * 1024)
    if spec.get("memory_cap_bytes"):
        cap_memory(device, int(spec["memory_cap_bytes"]))
    reset_peak_memory(device)
    try:
        seconds = time_call(call, device, spec["warmup"], spec["repeats"])
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(error):
            raise
        return dict(result, status=OUT_OF_MEMORY, detail=str(error).splitlines()[0][:300])
    median = statistics.median(seconds)
    return dict(result, status="ok", seconds=seconds, median_s=median, ms_per_image=median * 1000,
                peak_bytes=peak_memory_bytes(device))


def run_dense_benchmark(archs, patches, paths=PATHS, device="cpu", dtype="fp32", warmup=1, repeats=5,
                        memory_cap_bytes=None, timeout=None, progress=True) -> dict:
    """Measure every (arch, patches, path), each in a fresh process; the full report as a dict."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    configs = [(a, p, path) for a in archs for p in patches for path in paths]
    rows, machine = [], None
    bar = tqdm(configs, desc="dense benchmark", unit="config", disable=not progress)
    for arch, count, path in bar:
        bar.set_postfix_str(f"{arch} {count} patches {path}")
        spec = dict(task="dense", arch=arch, patches=count, path=path, device=str(device), dtype=dtype,
                    warmup=warmup, repeats=repeats, memory_cap_bytes=memory_cap_bytes)
        result = run_isolated(spec, timeout)
        machine = machine or result.pop("machine", None)
        result.pop("machine", None)
        row = dict(arch=arch, patches=count, grid=list(square_grid(count)), path=path, **result)
        rows.append(row)
        if progress:
            outcome = (f"{row['ms_per_image']:.1f} ms/image, peak {format_bytes(row['peak_bytes'])}"
                       if row["status"] == "ok" else f"{row['status']} ({row.get('detail', '')})")
            bar.write(f"{arch} at {count} patches, {path}: {outcome}", file=sys.stderr)
    return {
        "machine": machine or machine_info(device),  # children report it; this only if none did
        "settings": dict(device=device.type, dtype=dtype, warmup=warmup, repeats=repeats,
                         memory_cap_bytes=memory_cap_bytes, timeout_s=timeout, batch=1,
                         peak_memory=("torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS")),
        "architectures": {a: dict(ARCHITECTURES[a]) for a in archs},
        "results": rows,
        "ratios": dense_ratios(rows),
    }


def dense_ratios(rows) -> list[dict]:
    """fast / official time and peak memory for each (arch, patches) where both paths finished."""
    ok = {(r["arch"], r["patches"], r["path"]): r for r in rows if r.get("status") == "ok"}
    ratios = []
    for arch, count in dict.fromkeys((r["arch"], r["patches"]) for r in rows):
        fast, official = ok.get((arch, count, "fast")), ok.get((arch, count, "official"))
        if fast and official:
            ratios.append(dict(arch=arch, patches=count, time=fast["median_s"] / official["median_s"],
                               memory=fast["peak_bytes"] / official["peak_bytes"]))
    return ratios


def format_bytes(count: float) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB else f"{count / 1024**2:.0f} MiB"


def _time_cell(row) -> str:
    return f"{row['ms_per_image']:.1f}" if row.get("status") == "ok" else row.get("status", "not measured")


def _memory_cell(row) -> str:
    return format_bytes(row["peak_bytes"]) if row.get("status") == "ok" else row.get("status", "not measured")


def dense_markdown(report: dict) -> str:
    """Markdown tables, one per architecture, headed by the machine and settings."""
    settings, rows = report["settings"], report["results"]
    ratio = {(r["arch"], r["patches"]): r for r in report["ratios"]}
    by_key = {(r["arch"], r["patches"], r["path"]): r for r in rows}
    missing = {"status": "not measured"}
    memory_kind = "peak GPU memory (max_memory_allocated)" if settings["device"] == "cuda" else "peak RSS"
    lines = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        lines += [
            f"### {describe_architecture(arch)}",
            "",
            f"Machine: {describe_machine(report['machine'])}. {settings['dtype']}, one image per forward, "
            f"median of {settings['repeats']} after {settings['warmup']} warm-up; memory = {memory_kind}.",
            "",
            "| patches | grid | fast ms/image | official ms/image | time fast/official "
            "| fast peak | official peak | memory fast/official |",
            "|---:|:---:|---:|---:|---:|---:|---:|---:|",
        ]
        for count in dict.fromkeys(r["patches"] for r in rows if r["arch"] == arch):
            fast, official = by_key.get((arch, count, "fast"), missing), by_key.get((arch, count, "official"), missing)
            both = ratio.get((arch, count))
            time_ratio, memory_ratio = (f"{both['time']:.2f}x", f"{both['memory']:.2f}x") if both else ("n/a", "n/a")
            h, w = square_grid(count)
            lines.append(
                f"| {count} | {h}x{w} | {_time_cell(fast)} | {_time_cell(official)} | {time_ratio} | "
                f"{_memory_cell(fast)} | {_memory_cell(official)} | {memory_ratio} |"
            )
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Child process entry point: python -m fgdense.benchmarking SPEC_JSON
# ---------------------------------------------------------------------------------------------------

TASKS = {"dense": measure_dense}


def _child_main(argv) -> int:
    spec = json.loads(argv[0])
    try:
        result = TASKS[spec["task"]](spec)
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        result = {"status": OUT_OF_MEMORY, "detail": str(error).splitlines()[0][:300]}
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
