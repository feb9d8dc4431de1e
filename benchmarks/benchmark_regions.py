"""Boxes per second of region embeddings: one backbone pass per image vs the official per-box re-encoding.

    python benchmarks/benchmark_regions.py [--arch base] [--boxes 1 10 100] [--size 640x480] [--device auto] \
        [--out docs/benchmarks/regions.md]

Both paths run in the same process on the same random-weight model (speed does not depend on weight
values), the same image and boxes, with the checkpoint's default image processing (dynamic patch budget:
1024 patches for a 640x480 image), image processing included in the timings:

- one-pass: ``BoxClassifier.region_features`` (the image encoded once, every box pooled by RoIAlign);
- per-box: for each box, the image processed and ``get_image_region_features`` called with that box
  alone, as the official box-classification evaluation does
  (:func:`benchmarks.reference.official_region_features_per_box`).

Every per-box call costs one full image encoding, so its rate does not depend on the number of boxes;
it is timed on at most --per-box-max boxes per configuration (default 10) to keep the run short.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: fgdense and benchmarks

import argparse  # noqa: E402
import contextlib  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.harness import (describe_architecture, describe_machine, machine_info, median_seconds,  # noqa: E402
                                random_model)
from benchmarks.reference import official_region_features_per_box  # noqa: E402
from fgdense import cli  # noqa: E402
from fgdense.config import ARCHITECTURES  # noqa: E402
from fgdense.errors import OutputError  # noqa: E402
from fgdense.io.files import check_outputs, write_all, write_text  # noqa: E402


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
    parser.add_argument("--out", help="also write the markdown table here")
    return parser.parse_args(argv)


def random_boxes(count, width, height, seed=0):
    """``count`` valid xyxy boxes, 5% to 60% of the image side, anywhere in the image."""
    rng = np.random.default_rng(seed)
    sides = rng.uniform(0.05, 0.6, (count, 2)) * [width, height]
    corners = rng.uniform(0, 1, (count, 2)) * ([width, height] - sides)
    return np.concatenate([corners, corners + sides], axis=1)


def image_size(text: str) -> tuple[int, int] | None:
    """(width, height) of a WIDTHxHEIGHT text, or None if it is not one."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        return None
    return width, height


def check_args(args):
    """A one-line message for a user mistake, found before anything runs or is written; else None."""
    size = image_size(args.size)
    if size is None:
        return f"bad --size {args.size!r}: use WIDTHxHEIGHT, e.g. 640x480"
    if min(args.boxes) < 1 or args.per_box_max < 1 or args.repeats < 1 or min(size) < 1:
        return "--boxes, --per-box-max, --repeats and --size must be positive"
    try:
        check_outputs({"--out": args.out})
    except OutputError as err:
        return str(err)
    return None


def main(argv=None) -> int:
    from fgdense.classify import BoxClassifier
    from fgdense.processing import FGCLIP2ImageProcessor

    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        return cli.fail(problem)
    width, height = image_size(args.size)
    device = cli.device_of(args.device)

    model = random_model(args.arch, device)
    processor = FGCLIP2ImageProcessor()  # the released checkpoints' processing: dynamic budget on
    # precision "fp32": the model's own dtype; --precision bf16 is the autocast around both paths below.
    classifier = BoxClassifier(model, processor, precision="fp32")
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    patches = int(processor(image)["spatial_shapes"][0].prod())
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())

    rows = []
    with autocast:
        for count in args.boxes:
            boxes = random_boxes(count, width, height)
            one = median_seconds(lambda: classifier.region_features([image], [boxes]), device, repeats=args.repeats)
            timed = boxes[: args.per_box_max]
            each = median_seconds(lambda: official_region_features_per_box(model, processor, image, timed), device,
                                  repeats=args.repeats) / len(timed)
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
    if args.out:
        write_all([(args.out, write_text(table + "\n"))])
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
