"""Open-vocabulary segmentation of images with free-text labels (Chinese or English).

    python tools/segment.py IMAGE_OR_FOLDER... --labels 电脑 cat "dog|狗" [--model qihoo360/fg-clip2-base]
        [--device auto] [--max-patches auto] [--threshold auto|none|COS] [--background sky wall]
        [--templates] [--refine] [--out DIR] [--font PATH]

Writes, per image, into --out (default ./segment_out): NAME_overlay.png (coloured masks and a legend),
NAME_heatmaps.png (one score-map panel per label), NAME_labels.png (palette label map: 0 = background,
k = k-th label) and NAME.json (labels, per-label pixel area, mean score and COCO RLE mask).
"""

import argparse
import math
import sys

from fgdense.cli import fail, pick_device
from fgdense.dense import default_patch_budget
from fgdense.errors import FGDenseError
from fgdense.fonts import FontError, find_font
from fgdense.prompts import check_labels
from fgdense.segment import Segmenter, check_output_folder, expand_inputs, segment_files


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--labels", nargs="*", help="what to find: one label per argument; 'cat|猫' averages synonyms")
    parser.add_argument("--model", default="qihoo360/fg-clip2-base", help="checkpoint folder or model-hub id")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--max-patches", default="auto",
                        help="patch budget per image: auto = 16384 on GPU, 1024 on CPU")
    parser.add_argument("--threshold", default="auto",
                        help="background below this cosine score: auto = the model's 50%% match point, "
                             "none = every pixel gets its best label, or a number")
    parser.add_argument("--background", nargs="*", default=[], metavar="LABEL",
                        help="labels whose pixels count as background (e.g. sky wall floor)")
    parser.add_argument("--templates", action="store_true", help="average each label over prompt templates (EN/ZH)")
    parser.add_argument("--refine", action="store_true", help="snap mask boundaries to image edges (guided filter)")
    parser.add_argument("--out", default="segment_out", help="output folder (created; default ./segment_out)")
    parser.add_argument("--font", help="a font file with glyphs for every label (default: an installed CJK font)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def parse_number(text, name, kind):
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} must be 'auto'{' or none' if name == '--threshold' else ''} or a number, "
                         f"got {text!r}") from None


def check_args(args):
    """Every user mistake, found before the model is loaded or anything is written."""
    if not args.labels:
        raise ValueError("give at least one label to find: --labels L1 L2 ...")
    labels = check_labels(args.labels)
    if len(labels) > 255:
        raise ValueError(f"at most 255 labels fit a palette label map, got {len(labels)}")
    check_labels(labels + list(args.background), "label (including --background labels)")
    budget = None if args.max_patches == "auto" else parse_number(args.max_patches, "--max-patches", int)
    if budget is not None and budget < 1:
        raise ValueError(f"--max-patches must be positive, got {budget}")
    threshold = args.threshold if args.threshold in ("auto", "none") else parse_number(args.threshold, "--threshold", float)
    if isinstance(threshold, float) and not math.isfinite(threshold):
        raise ValueError(f"--threshold must be a finite number, auto or none, got {args.threshold}")
    paths = expand_inputs(args.images)
    font = find_font("".join(labels) + "0123456789.%-", args.font)
    out = check_output_folder(args.out)
    return labels, budget, None if threshold == "none" else threshold, paths, font, out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        labels, budget, threshold, paths, font, out = check_args(args)
        device = pick_device(args.device)
    except (FGDenseError, FontError, ValueError, OSError) as err:
        return fail(str(err))
    try:
        segmenter = Segmenter.from_pretrained(args.model, device=device, max_num_patches=budget, threshold=threshold,
                                              background_labels=args.background, templates=args.templates,
                                              refine=args.refine)
    except (FGDenseError, ValueError, OSError) as err:
        return fail(str(err))
    extra = {"model": args.model, "max_patches": budget or default_patch_budget(device)}
    try:
        report = segment_files(segmenter, paths, labels, out, font=font, progress=not args.quiet, extra_json=extra)
    except OSError as err:
        return fail(f"cannot write outputs to {out}: {err.strerror or err}")
    print(f"wrote {4 * len(report.written)} files for {len(report.written)} image(s) to {out}")
    for path, why in report.failed.items():
        print(f"error: skipped {path}: {why}", file=sys.stderr)
    if report.failed:
        return fail(f"{len(report.failed)} of {len(paths)} image(s) could not be read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
