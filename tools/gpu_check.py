"""On a machine with a GPU: every GPU row of docs/benchmarks.md and a bf16-vs-fp32 parity check, in one go.

    python tools/gpu_check.py [--budget 470] [--keep FOLDER] [--only dense train ...]

Runs, one after another and each in its own process: the parity check of the dense pass and of every task
(bf16 autocast and bf16 weights against fp32), then the GPU benchmarks of docs/benchmarks.md with repeats
cut to fit: dense features (base and so400m, 256 to 16384 patches, fast path against the official
formulation), the segmentation command line, region embeddings, box-classification evaluation, stage-2
training, and tools/segment.py throughput on 1 GPU (and on every GPU, when there are more). It stops
starting new steps when --budget seconds (default 470, under 8 minutes) would be overrun, and prints one
table: each step, what it measured, how long it took. --keep FOLDER keeps every step's own output (JSON,
Markdown, log), from which docs/benchmarks.md's rows are filled; --only runs the steps named (parity,
dense, segment, regions, boxclass, train, throughput), e.g. those a first run had no time left for.

Without a CUDA GPU it stops at once with one line. --cpu-smoke runs the same steps at toy sizes on the
CPU, to check the plumbing (the tests do), and measures nothing worth keeping.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 470
STEPS = ("parity", "dense", "segment", "regions", "boxclass", "train", "throughput")


def steps(gpus: int, smoke: bool) -> list[dict]:
    """The steps: name, script and arguments (at GPU sizes, or toy sizes with ``smoke``), the least time worth
    starting it with, and which output file it writes (``{out}`` is filled in)."""
    device = "cpu" if smoke else "cuda"
    processes = ["1"] + ([str(gpus)] if gpus > 1 else [])
    big = {
        "parity": ["--arch", "base", "--patches", "1024", "--repeats", "5", "--tasks"],
        "dense": ["--arch", "base", "so400m", "--patches", "256", "1024", "4096", "16384", "--dtype", "bf16",
                  "--repeats", "3", "--warmup", "1", "--timeout", "90"],
        "segment": ["--arch", "base", "--images", "5", "--max-patches", "16384", "--processes", "1"],
        "regions": ["--arch", "base", "--boxes", "1", "10", "100"],
        "boxclass": ["--arch", "base", "--images", "100", "--reference-images", "10", "--workers", "8"],
        "train": ["--arch", "base", "--batch-size", "32", "--patches", "1024", "--steps", "20"],
        "throughput": ["--arch", "base", "--images", "64", "--processes", *processes],
    }
    toy = {
        "parity": ["--arch", "tiny", "--patches", "64", "--repeats", "1", "--tasks"],
        "dense": ["--arch", "tiny", "--patches", "64", "--repeats", "1", "--warmup", "0"],
        "segment": ["--arch", "tiny", "--images", "1", "--size", "64x48", "--max-patches", "64", "--processes", "1"],
        "regions": ["--arch", "tiny", "--boxes", "2", "--size", "64x48", "--per-box-max", "1", "--repeats", "1"],
        "boxclass": ["--arch", "tiny", "--images", "2", "--reference-images", "1", "--workers", "0"],
        "train": ["--arch", "tiny", "--batch-size", "2", "--patches", "64", "--steps", "1", "--warmup", "0"],
        "throughput": ["--arch", "tiny", "--images", "2", "--size", "64x48", "--max-patches", "64", "--processes", "1"],
    }
    sizes = toy if smoke else big
    table = [
        ("parity", "bf16 vs fp32 parity (dense pass, every task)", "benchmark_precision.py", "parity.json", 40),
        ("dense", "dense features, base + so400m, 256-16384 patches", "benchmark_dense.py", "dense.json", 120),
        ("segment", "tools/segment.py, base, 16384 patches, 1 GPU", "benchmark_throughput.py", "segment.json", 30),
        ("regions", "region embeddings, base, 1/10/100 boxes", "benchmark_regions.py", "regions.md", 30),
        ("boxclass", "box-classification evaluation, base", "benchmark_boxclass.py", "boxclass.json", 40),
        ("train", "stage-2 training, base, batch 32, 1024 patches", "benchmark_train.py", "train.json", 40),
        ("throughput", f"tools/segment.py throughput, 64 photos, GPUs: {', '.join(processes)}",
         "benchmark_throughput.py", "throughput.json", 60),
    ]
    return [{"key": key, "what": what, "script": ROOT / "benchmarks" / script,
             "args": sizes[key] + ["--device", device], "out": out, "least_s": least}
            for key, what, script, out, least in table]


def summarise(step: dict, out: Path | None, stdout: str) -> str:
    """The step's main numbers, in a line."""
    import json

    key = step["key"]
    data = json.loads(out.read_text()) if out is not None and out.suffix == ".json" and out.is_file() else None
    if key == "parity" and data:
        worst = max((row["max_abs_diff"] for row in data["tasks"]), default=0.0)
        fast = {row["precision"]: row for row in data["dense"]}
        verdict = "PASS" if all(row["pass"] for row in data["tasks"]) else "FAIL"
        return (f"{verdict}: tasks within {worst:.4f} of fp32 (tolerance 0.01); dense pass bf16 autocast "
                f"{fast['bf16 autocast']['time_vs_fp32']:.2f}x fp32's time, bf16 weights "
                f"{fast['bf16 weights']['time_vs_fp32']:.2f}x")
    if key == "dense" and data:
        cells = []
        for row in data["results"]:
            value = f"{row['ms_per_image']:.1f} ms" if row.get("status") == "ok" else row.get("status", "?")
            cells.append(f"{row['arch']} {row['patches']} {row['path']}: {value}")
        return "; ".join(cells)
    if key == "segment" and data:
        row = data["rows"][0]
        if row["status"] != "ok":
            return f"failed: {row['detail']}"
        return f"{1 / row['images_per_s']:.2f} s per image ({row['seconds_per_image']['model']:.2f} s in the model)"
    if key == "regions" and out is not None and out.is_file():
        rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
        return "; ".join(f"{r.split('|')[1].strip()} boxes: {r.split('|')[2].strip()} boxes/s one-pass, "
                         f"{r.split('|')[4].strip()}" for r in rows)
    if key == "boxclass" and data:
        return (f"{data['fgdense_ann_per_s']:.1f} annotations/s (official per image "
                f"{data['official_per_image_ann_per_s']:.1f}); top-1 agreement {data['top1_agreement_with_per_image']:.3f}")
    if key == "train" and data:
        memory = f", peak {data['peak_memory_gib']} GiB" if data.get("peak_memory_gib") is not None else ""
        return f"{data['steps_per_s']} steps/s, {data['images_per_s']} images/s{memory}"
    if key == "throughput" and data:
        return "; ".join(f"{row['processes']} process(es): {row['images_per_s']:.2f} images/s"
                         if row["status"] == "ok" else f"{row['processes']}: {row['status']}" for row in data["rows"])
    return "no result"


def run_steps(plan: list[dict], budget: float, keep: Path) -> list[dict]:
    import subprocess
    import time

    started = time.perf_counter()
    rows = []
    for step in plan:
        left = budget - (time.perf_counter() - started)
        if left < step["least_s"]:
            rows.append({"what": step["what"], "result": "not run: the time budget is spent", "seconds": 0.0})
            continue
        out = keep / step["out"] if step["out"] else None
        command = [sys.executable, str(step["script"]), *step["args"], *(["--out", str(out)] if out else [])]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=left, cwd=ROOT)
            (keep / f"{step['key']}.log").write_text(done.stdout + done.stderr)
            if done.returncode != 0 and not (out is not None and out.is_file()):
                lines = [line for line in done.stderr.splitlines() if line.strip()]
                result = f"failed: {lines[-1] if lines else f'exit {done.returncode}'}"
            else:
                result = summarise(step, out, done.stdout)
        except subprocess.TimeoutExpired:
            result = "timed out: the time budget is spent"
        rows.append({"what": step["what"], "result": result, "seconds": time.perf_counter() - start,
                     "command": " ".join(command)})
    return rows


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for all steps (default {BUDGET_S})")
    parser.add_argument("--keep", help="folder for every step's own output and log (default: a temporary folder)")
    parser.add_argument("--only", nargs="+", metavar="STEP", choices=STEPS,
                        help=f"run only these steps ({', '.join(STEPS)})")
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU: checks the plumbing only")
    args = parser.parse_args(argv)

    import tempfile

    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        return cli.fail("tools/gpu_check.py needs a CUDA GPU and this machine has none (torch.cuda.is_available() "
                        "is False); nothing was run")
    if args.budget <= 0:
        return cli.fail("--budget must be positive")
    gpus = 0 if args.cpu_smoke else torch.cuda.device_count()
    machine = "CPU (smoke run: toy sizes)" if args.cpu_smoke else \
        f"{gpus} x {torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(args.keep) if args.keep else Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        plan = [step for step in steps(gpus, args.cpu_smoke) if not args.only or step["key"] in args.only]
        rows = run_steps(plan, args.budget, keep)
    print(f"GPU check on {machine}; torch {torch.__version__}")
    print()
    print("| step | result | seconds |")
    print("|---|---|---:|")
    for row in rows:
        print(f"| {row['what']} | {row['result']} | {row['seconds']:.0f} |")
    failed = [row for row in rows if row["result"].startswith(("failed", "FAIL", "timed out"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
