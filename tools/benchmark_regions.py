"""Boxes per second of region embeddings: one backbone pass per image vs the official per-box re-encoding.

    python tools/benchmark_regions.py [--arch base] [--boxes 1 10 100] [--size 640x480] [--device auto] \
        [--output docs/benchmarks/regions.md]

Both paths run in the same process on the same random-weight model (speed does not depend on weight
values), the same image and boxes, with the checkpoint's default image processing (dynamic patch budget:
1024 patches for a 640x480 image), image processing included in the timings:

- one-pass: ``BoxClassifier.region_features`` (the image encoded once, every box pooled by RoIAlign);
- per-box: for each box, the image processed and ``get_image_region_features`` called with that box
  alone, as the official box-classification evaluation does.

Every per-box call costs one full image encoding, so its rate does not depend on the number of boxes;
it is timed on at most --per-box-max boxes per configuration (default 10) to keep the run short.
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fgdense.benchmarking import (ARCHITECTURES, describe_architecture, describe_machine, machine_info, random_model,
                                  synchronize)
from fgdense.cli import fail, pick_device
from fgdense.processing import FGCLIP2ImageProcessor
from fgdense.regions import BoxClassifier


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="base", choices=list(ARCHITECTURES), help="vision tower (default base)")
    parser.add_argument("--boxes", nargs="+", type=int, default=[1, 10, 100], help="boxes per image (default 1 10 100)")
    parser.add_argument("--size", default="640x480", help="image WIDTHxHEIGHT in pixels (default 640x480)")
    parser.add_argument("--per-box-max", type=int, default=10,
                        help="per-box path: boxes timed per configuration (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each path, median kept (default 3)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, ...")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="both paths (default fp32)")
    parser.add_argument("--output", help="also write the markdown table here")
    return parser.parse_args(argv)


def random_boxes(count, width, height, seed=0):
    """``count`` valid xyxy boxes, 5% to 60% of the image side, anywhere in the image."""
    rng = np.random.default_rng(seed)
    sides = rng.uniform(0.05, 0.6, (count, 2)) * [width, height]
    corners = rng.uniform(0, 1, (count, 2)) * ([width, height] - sides)
    return np.concatenate([corners, corners + sides], axis=1)


def seconds(fn, device, repeats):
    """Median seconds of ``repeats`` timed calls after one untimed call."""
    fn()
    runs = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        device = pick_device(args.device)
    except ValueError as err:
        return fail(f"bad --size {args.size!r} (use WIDTHxHEIGHT) or --device: {err}")
    if min(args.boxes) < 1 or args.per_box_max < 1 or args.repeats < 1 or width < 1 or height < 1:
        return fail("--boxes, --per-box-max, --repeats and --size must be positive")
    if args.output and not Path(args.output).resolve().parent.is_dir():
        return fail(f"the folder of --output {args.output} does not exist")

    model = random_model(args.arch, device)
    processor = FGCLIP2ImageProcessor()  # the released checkpoints' processing: dynamic budget on
    classifier = BoxClassifier(model, None, processor, precision="model")
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    patches = int(processor(image)["spatial_shapes"][0].prod())
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())

    def per_box(boxes):
        for box in boxes:
            inputs = {k: v.to(device) for k, v in processor(image).items()}
            with torch.no_grad():
                model.get_image_region_features(**inputs, image_sizes=[(height, width)], region_infos=[[box.tolist()]])

    rows = []
    with autocast:
        for count in args.boxes:
            boxes = random_boxes(count, width, height)
            one = seconds(lambda: classifier.region_features([image], [boxes], progress=False), device, args.repeats)
            timed = boxes[: args.per_box_max]
            each = seconds(lambda: per_box(timed), device, args.repeats) / len(timed)
            rows.append((count, count / one, 1 / each, count * each / one))
            print(f"{count} boxes: one-pass {count / one:.1f} boxes/s, per-box {1 / each:.2f} boxes/s", file=sys.stderr)

    lines = [
        f"Region embeddings, {describe_architecture(args.arch)} (random weights), {args.precision}, "
        f"one {width}x{height} image ({patches} patches, the checkpoint's dynamic budget).",
        f"Machine: {describe_machine(machine_info(device))}.",
        "",
        "| boxes per image | one-pass (boxes/s) | per-box re-encoding (boxes/s) | speed-up |",
        "|---:|---:|---:|---:|",
        *[f"| {n} | {a:.1f} | {b:.2f} | {s:.1f}x |" for n, a, b, s in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if args.output:
        fd, tmp = tempfile.mkstemp(dir=Path(args.output).resolve().parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(table + "\n")
        os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
