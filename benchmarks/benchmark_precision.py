"""bf16 against fp32 for the dense pass on this machine: speed, and how far bf16's scores are from fp32's.

    python benchmarks/benchmark_precision.py [--arch base] [--patches 1024] [--repeats 7] [--device cpu]
        [--tasks] [--out result.json]

The question it answers: should ``--precision auto`` mean bf16 on this kind of CPU, as it does on CUDA?
Random weights of the real architecture (benchmarks.harness.random_model; speed does not depend on the
values) and one image, a scikit-image photograph processed at the patch budget. Three ways of running the
same dense pass (``fgdense.dense.dense_grids``):

- fp32: the fp32 model, no autocast (``--precision fp32``);
- bf16 autocast: the fp32 model under ``torch.autocast(bfloat16)`` (``--precision bf16``, CUDA's ``auto``);
- bf16 weights: the model's weights cast to bfloat16.

Timed interleaved (fp32, autocast, weights, fp32, ...) so a busy shared machine slows all alike; the
median per image is printed. Scores: cosine of every patch feature to 8 random unit "label" vectors, as
segmentation scores them; the table gives the largest absolute difference from fp32 over every patch and
label, and the share of patches whose best label changes. Prints the machine (with the CPU's bf16 flags)
and the load average before and after.

With --tasks it also runs the parity check of every task on this device: Segmenter (interpolation and the
guided filter included), BoxClassifier (RoIAlign) and Grounder (candidate boxes and heatmaps), each on the
same random model in bf16 autocast and in bf16 weights against fp32, and says PASS when every cosine score
is within the tolerance the CPU tests state (tests/test_precision_paths.py: 0.01).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: fgdense and benchmarks

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.harness import describe_architecture, describe_machine, machine_info, random_model, synchronize  # noqa: E402
from fgdense import cli  # noqa: E402
from fgdense.config import ARCHITECTURES  # noqa: E402

WAYS = ("fp32", "bf16 autocast", "bf16 weights")
LABELS = 8
TOLERANCE = 0.01  # as tests/test_precision_paths.py states it


def cpu_flags() -> list[str]:
    """The CPU's native bf16 features (avx512_bf16, amx_bf16, amx_tile), as /proc/cpuinfo lists them."""
    wanted = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in have]
    except OSError:
        pass
    return []


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def photo_inputs(processor, patches: int):
    """One scikit-image photograph (astronaut, 512x512) processed at ``patches``: real rows only."""
    from skimage import data

    from fgdense.dense import pick_patch_budget

    image = data.astronaut()
    budget = pick_patch_budget(*image.shape[:2], patches, processor.patch_size)
    inputs = processor(image, max_num_patches=budget, dynamic_max_patches=False)
    h, w = (int(v) for v in inputs["spatial_shapes"][0])
    return inputs["pixel_values"][:, : h * w], inputs["spatial_shapes"]


def task_parity(arch: str, device, patches: int) -> list[dict]:
    """The largest cosine difference from fp32 of every task's scores, for bf16 autocast and bf16 weights."""
    import numpy as np
    from PIL import Image
    from skimage import data

    from fgdense.classify import BoxClassifier
    from fgdense.config import ARCHITECTURES, Architecture
    from fgdense.ground import Grounder
    from fgdense.processing import FGCLIP2ImageProcessor
    from fgdense.segment import Segmenter
    from fgdense.tiny import build_tokenizer

    size = ARCHITECTURES[arch]
    tokenizer = build_tokenizer()
    text = Architecture(hidden=size.hidden, layers=1, heads=size.heads, mlp=size.mlp)
    processor = FGCLIP2ImageProcessor(patch_size=16, resample=2)
    image = Image.fromarray(data.chelsea())
    boxes = [[10, 10, 220, 200], [150, 60, 440, 290], [0, 0, 60, 60]]
    labels, phrases = ["cat", "电脑", "grass"], ["a cat", "一只猫"]
    outcomes = {}
    for way, dtype, precision in (("fp32", torch.float32, "fp32"), ("bf16 autocast", torch.float32, "bf16"),
                                  ("bf16 weights", torch.bfloat16, "auto")):
        model = random_model(arch, device, dtype, vocab_size=len(tokenizer), text=text)
        common = dict(precision=precision)
        segment = Segmenter(model, processor, tokenizer, threshold=None, refine=True, max_num_patches=patches, **common)
        classify = BoxClassifier(model, processor, tokenizer, **common)
        ground = Grounder(model, processor, tokenizer, **common)
        grounding = ground.ground(image, phrases, boxes=boxes)
        outcomes[way] = {"Segmenter (scores after interpolation and guided filter)": segment.segment(image, labels).scores,
                         "BoxClassifier (RoIAlign cosines)": classify.classify(image, boxes, labels).cosine,
                         "Grounder (box scores)": grounding.scores,
                         "Grounder (heatmaps)": grounding.grid_heatmaps}
        del model
    rows = []
    for way in WAYS[1:]:
        for task, reference in outcomes["fp32"].items():
            diff = float(np.abs(outcomes[way][task] - reference).max())
            rows.append({"task": task, "precision": way, "max_abs_diff": diff, "pass": diff <= TOLERANCE})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="base", choices=list(ARCHITECTURES), help="vision tower (default base)")
    parser.add_argument("--patches", type=int, default=1024, help="patch budget (default 1024, the CPU default)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each way (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each way first (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--tasks", action="store_true", help="also the parity check of every task (see above)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or not 4 <= args.patches <= 16384:
        return cli.fail("--repeats must be >= 1, --warmup >= 0 and --patches from 4 to 16384")
    device = cli.device_of(args.device)

    from fgdense.dense import dense_grids
    from fgdense.processing import FGCLIP2ImageProcessor

    load_before = load_average()
    processor = FGCLIP2ImageProcessor(patch_size=16, resample=2)
    values, shapes = photo_inputs(processor, args.patches)
    fp32 = random_model(args.arch, device, torch.float32)
    bf16 = random_model(args.arch, device, torch.bfloat16)  # same seed: the same weights, rounded to bf16
    calls = {
        "fp32": lambda: dense_grids(fp32, values, shapes, precision="fp32")[0],
        "bf16 autocast": lambda: dense_grids(fp32, values, shapes, precision="bf16")[0],
        "bf16 weights": lambda: dense_grids(bf16, values, shapes, precision="fp32")[0],
    }
    grids = {way: call() for way, call in calls.items()}  # also the first warm-up
    for _ in range(args.warmup - 1):
        for call in calls.values():
            call()
    seconds = {way: [] for way in WAYS}
    for _ in range(args.repeats):
        for way, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            seconds[way].append(time.perf_counter() - start)
    load_after = load_average()

    labels = F.normalize(torch.randn(LABELS, grids["fp32"].shape[-1], generator=torch.Generator().manual_seed(0)), dim=-1)
    scores = {way: torch.einsum("hwd,kd->khw", F.normalize(g.float().cpu(), dim=-1), labels) for way, g in grids.items()}
    base_ms = statistics.median(seconds["fp32"]) * 1000
    h, w = (int(v) for v in shapes[0])
    print(f"Machine: {describe_machine(machine_info(device))}; CPU bf16 flags: {', '.join(cpu_flags()) or 'none'}")
    print(f"Load average (1, 5, 15 min) before: {load_before}; after: {load_after}")
    print(f"{describe_architecture(args.arch)}; one 512x512 photograph at {args.patches} patches ({h}x{w} grid); "
          f"median of {args.repeats} interleaved runs after {args.warmup} warm-up")
    print()
    print("| precision | ms per image | time vs fp32 | max abs score difference vs fp32 | best label changed |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for way in WAYS:
        ms = statistics.median(seconds[way]) * 1000
        diff = (scores[way] - scores["fp32"]).abs().max().item()
        changed = (scores[way].argmax(0) != scores["fp32"].argmax(0)).float().mean().item()
        rows.append({"precision": way, "ms_per_image": ms, "time_vs_fp32": ms / base_ms, "max_abs_diff": diff,
                     "best_label_changed": changed})
        print(f"| {way} | {ms:.1f} | {ms / base_ms:.2f}x | {diff:.4f} | {100 * changed:.1f} % |")
    tasks = []
    if args.tasks:
        tasks = task_parity(args.arch, device, args.patches)
        print()
        print(f"| task | precision | max abs cosine difference vs fp32 | within {TOLERANCE} |")
        print("|---|---|---:|---|")
        for row in tasks:
            print(f"| {row['task']} | {row['precision']} | {row['max_abs_diff']:.4f} | {'PASS' if row['pass'] else 'FAIL'} |")
    if args.out:
        from fgdense.io.files import write_json

        write_json(args.out, {"machine": describe_machine(machine_info(device)), "cpu_bf16_flags": cpu_flags(),
                              "load_before": load_before, "load_after": load_after, "arch": args.arch,
                              "patches": args.patches, "repeats": args.repeats, "dense": rows, "tasks": tasks})
    return 0 if all(row["pass"] for row in tasks) else 1


if __name__ == "__main__":
    sys.exit(cli.run(main))
