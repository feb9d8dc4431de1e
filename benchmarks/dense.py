"""The dense-feature benchmark: fgdense's fast path against the official formulation, speed and peak memory.

Compares :func:`fgdense.dense.dense_grids` with :func:`benchmarks.reference.official_dense_features` on
the real FG-CLIP 2 vision architectures with random weights (speed and memory do not depend on the
weight values). Each (architecture, patch budget, path) is measured by :func:`measure_dense` in its own
process (:func:`benchmarks.harness.run_isolated`). ``benchmarks/benchmark_dense.py`` is the command.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys

import torch

from .harness import (DTYPES, OUT_OF_MEMORY, cap_memory, current_memory_bytes, describe_architecture,
                      describe_machine, format_bytes, is_out_of_memory, machine_info, peak_memory_bytes,
                      random_inputs, random_model, reset_peak_memory, run_isolated, square_grid, synchronize,
                      time_call)
from .reference import official_dense_features

PATHS = ("fast", "official")


def dense_call(model, path: str, patches: int, device, dtype):
    """A no-argument function computing one image's dense features at ``patches`` by ``path``."""
    from fgdense.dense import dense_grids

    values, mask, shapes = random_inputs(patches, device, dtype)
    if path == "fast":
        # precision="fp32": the model's own dtype, no autocast; both paths do the same arithmetic.
        return lambda: dense_grids(model, values, shapes, max_batch_tokens=patches, precision="fp32")
    return lambda: official_dense_features(model, values, mask, shapes)


def measure_dense(spec: dict) -> dict:
    """One configuration (arch, patches, path, device, dtype, warmup, repeats, memory cap): a result dict.

    Meant to run in its own process (see :func:`benchmarks.harness.run_isolated`): it caps this
    process's memory.
    """
    device = torch.device(spec["device"])
    result = {"machine": machine_info(device)}
    dtype = DTYPES[spec["dtype"]]
    model = random_model(spec["arch"], device, dtype)
    # A tiny run first: lazy imports, thread pools and kernels get set up before any memory cap.
    dense_call(model, spec["path"], 4, device, dtype)()
    call = dense_call(model, spec["path"], spec["patches"], device, dtype)
    synchronize(device)
    result["baseline_bytes"] = current_memory_bytes(device)
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

    from fgdense.config import ARCHITECTURES

    device = torch.device(device)
    configs = [(a, p, path) for a in archs for p in patches for path in paths]
    rows, machine = [], None
    bar = tqdm(configs, desc="dense benchmark", unit="config", disable=not progress)
    for arch, count, path in bar:
        bar.set_postfix_str(f"{arch} {count} patches {path}")
        spec = dict(arch=arch, patches=count, path=path, device=str(device), dtype=dtype,
                    warmup=warmup, repeats=repeats, memory_cap_bytes=memory_cap_bytes)
        result = run_isolated(measure_dense, spec, timeout)
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
        "architectures": {a: dataclasses.asdict(ARCHITECTURES[a]) for a in archs},
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


__all__ = ["PATHS", "dense_call", "dense_markdown", "dense_ratios", "measure_dense", "run_dense_benchmark"]
