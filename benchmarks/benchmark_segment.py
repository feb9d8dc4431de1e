"""Seconds per image of the segmentation command-line path (features, labels, pictures, files) on this machine.

    python benchmarks/benchmark_segment.py [--arch base|tiny] [--images 5] [--max-patches auto] [--device cpu]

Random weights of the chosen architecture (base: FG-CLIP 2 base's towers, 12 layers of width 768;
speed does not depend on the weight values), built in memory, so nothing is downloaded. Runs
``fgdense.io.outputs.segment_files`` (exactly what tools/segment.py runs after loading the model) on
scikit-image photographs at their own sizes, after one warm-up image, and prints seconds per image
and a Markdown table row for docs/benchmarks.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: fgdense and benchmarks

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.harness import machine_info, synchronize  # noqa: E402
from fgdense import cli  # noqa: E402

ARCHS = ("base", "tiny")  # sizes of fgdense.config.ARCHITECTURES, for both towers
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
LABELS = ["电脑", "cat", "人|person", "天空", "rocket"]


def build_segmenter(arch: str, device, max_patches):
    """A Segmenter on a random-weight model of ``arch`` (both towers), with a small tokenizer."""
    from fgdense.config import architecture_config
    from fgdense.model import FGCLIP2Model
    from fgdense.processing import FGCLIP2ImageProcessor
    from fgdense.segment import Segmenter
    from fgdense.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    model = FGCLIP2Model(architecture_config(arch, len(tokenizer))).to(device).eval()
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
    from fgdense.dense import resolve_budget
    from fgdense.io.outputs import segment_files

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, default="base", help="model size (default base)")
    parser.add_argument("--images", type=int, default=5, help="timed images (default 5), after one warm-up")
    parser.add_argument("--max-patches", default="auto", help="auto = the CLI default (1024 on CPU, 16384 on GPU), "
                                                              "or a number up to 16384")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.images < 1:
        return cli.fail("--images must be at least 1")
    if args.max_patches == "checkpoint":
        return cli.fail("--max-patches: auto or a number (this benchmark times a fixed budget)")
    budget = cli.max_patches_setting(args.max_patches)
    device = cli.device_of(args.device)
    budget = resolve_budget(budget, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    segmenter = build_segmenter(args.arch, device, budget)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp, args.images + 1)
        segment_files(segmenter, photos[:1], LABELS, tmp / "out", progress=False)  # warm-up
        synchronize(device)
        started = time.perf_counter()
        report = segment_files(segmenter, photos[1:], LABELS, tmp / "out", progress=False)
        synchronize(device)
        seconds = (time.perf_counter() - started) / args.images
    if report.failed:
        return cli.fail(f"benchmark images failed: {report.failed}")
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU {machine_info(device)['cpu']}, {torch.get_num_threads()} threads")
    print(f"model built in {build_s:.1f} s (random {args.arch} weights)")
    print(f"{seconds:.2f} s per image: tools/segment.py path, {args.arch} architecture, {budget} patches, "
          f"{len(LABELS)} labels, {args.images} scikit-image photos, {where}")
    print(f"| segmentation CLI, seconds per image | {args.arch} | {budget} patches | {len(LABELS)} labels | {where} "
          f"| {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
