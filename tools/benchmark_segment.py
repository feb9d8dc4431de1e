"""Seconds per image of the segmentation command-line path (features, labels, pictures, files) on this machine.

    python tools/benchmark_segment.py [--arch base|tiny] [--images 5] [--max-patches auto] [--device cpu]

Random weights of the chosen architecture (base: FG-CLIP 2 base's towers, 12 layers of width 768;
speed does not depend on the weight values), built in memory, so nothing is downloaded. Runs
``fgdense.segment.segment_files`` (exactly what tools/segment.py runs after loading the model) on
scikit-image photographs at their own sizes, after one warm-up image, and prints seconds per image
and a Markdown table row for docs/benchmarks.md.
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from fgdense.cli import fail, pick_device
from fgdense.dense import default_patch_budget
from fgdense.model import FGCLIP2Model
from fgdense.model.tiny import build_tokenizer, tiny_config
from fgdense.processing import FGCLIP2ImageProcessor
from fgdense.segment import Segmenter, segment_files

ARCHS = {  # hidden width, layers, heads, MLP width
    "base": (768, 12, 12, 3072),
    "tiny": (64, 2, 4, 128),
}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
LABELS = ["电脑", "cat", "人|person", "天空", "rocket"]


def build_segmenter(arch: str, device, max_patches):
    hidden, layers, heads, mlp = ARCHS[arch]
    tokenizer = build_tokenizer()
    config = tiny_config(len(tokenizer), hidden=hidden, layers=layers, heads=heads)
    config.text_config.intermediate_size = config.vision_config.intermediate_size = mlp
    torch.manual_seed(0)
    model = FGCLIP2Model(config).to(device).eval()
    processor = FGCLIP2ImageProcessor(max_num_patches=256, patch_size=16, resample=2)
    return Segmenter(model, processor, tokenizer, max_num_patches=max_patches, threshold=None)


def write_photos(folder: Path, count: int) -> list[Path]:
    from skimage import data

    paths = []
    for i in range(count):
        name = PHOTOS[i % len(PHOTOS)]
        pixels = getattr(data, name)()
        path = folder / f"{i:02d}_{name}.jpg"
        Image.fromarray(pixels).convert("RGB").save(path, quality=95)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="base", help="model size (default base)")
    parser.add_argument("--images", type=int, default=5, help="timed images (default 5), after one warm-up")
    parser.add_argument("--max-patches", default="auto", help="auto = the CLI default (1024 on CPU, 16384 on GPU)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.images < 1:
        return fail("--images must be at least 1")
    try:
        device = pick_device(args.device)
        budget = default_patch_budget(device) if args.max_patches == "auto" else int(args.max_patches)
    except ValueError as err:
        return fail(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    segmenter = build_segmenter(args.arch, device, budget)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp, args.images + 1)
        segment_files(segmenter, photos[:1], LABELS, tmp / "out", progress=False)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        report = segment_files(segmenter, photos[1:], LABELS, tmp / "out", progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / args.images
    if report.failed:
        return fail(f"benchmark images failed: {report.failed}")
    cpu = platform.processor() or platform.machine()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {cpu}, {torch.get_num_threads()} threads"
    print(f"model built in {build_s:.1f} s (random {args.arch} weights)")
    print(f"{seconds:.2f} s per image: tools/segment.py path, {args.arch} architecture, {budget} patches, "
          f"{len(LABELS)} labels, {args.images} scikit-image photos, {where}")
    print(f"| segmentation CLI, seconds per image | {args.arch} | {budget} patches | {len(LABELS)} labels | {where} "
          f"| {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
