"""Open-vocabulary semantic segmentation quality (per-class IoU, mIoU, pixel accuracy) of a checkpoint.

    # VOC / ADE20K style: images + single-channel label PNGs (same stems, 255 = ignore) + class list
    python tools/eval_segmentation.py --images IMAGES --masks LABEL_PNGS --classes classes.txt --model CKPT \
        [--background-class background] [--out report.json]
    # COCO-format mask annotations
    python tools/eval_segmentation.py --images IMAGES --coco instances.json --model CKPT [--background-class background]

Class names are the segmenter's labels (``box`` walk; 'cat|猫' synonyms work in the class list). The
--background-class (a name in the class list; for COCO a new class 0 owning unannotated pixels) is
not a label: pixels the segmenter leaves as background are predicted as it.
"""

import argparse
import sys
from pathlib import Path

from fgdense.cli import fail, pick_device
from fgdense.errors import FGDenseError
from fgdense.evaluation.segmentation import (
    IGNORE_INDEX, CocoDataset, FolderDataset, evaluate_segmentation, format_report, segmenter_predictor, write_report,
)
from fgdense.segment import Segmenter


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of the images")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--masks", help="folder of label PNGs (pixel = class index, same file stems as the images)")
    source.add_argument("--coco", help="COCO-format annotation JSON with segmentation masks")
    parser.add_argument("--classes", help="class list for --masks: a text file, one name per line, in index order")
    parser.add_argument("--background-class", help="the class that the segmenter's background pixels count as")
    parser.add_argument("--ignore-index", type=int, default=IGNORE_INDEX, help="label value not scored (default 255)")
    parser.add_argument("--reduce-zero-label", action="store_true",
                        help="ADE20K convention: label 0 is not scored and labels 1..K are classes 0..K-1")
    parser.add_argument("--model", required=True, help="checkpoint folder or model-hub id")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--max-patches", type=int, help="patch budget per image (default 16384 on GPU, 1024 on CPU)")
    parser.add_argument("--threshold", default="auto", help="background below this cosine: auto, none or a number")
    parser.add_argument("--background", nargs="*", default=[], metavar="LABEL", help="extra labels counted as background")
    parser.add_argument("--templates", action="store_true", help="average each label over prompt templates")
    parser.add_argument("--refine", action="store_true", help="snap boundaries to image edges (guided filter)")
    parser.add_argument("--max-images", type=int, help="stop after this many images (the report says incomplete)")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def load_dataset(args):
    if args.masks:
        if not args.classes:
            raise ValueError("--masks needs --classes (the class list, one name per line)")
        return FolderDataset(args.images, args.masks, Path(args.classes), args.ignore_index, args.background_class,
                             reduce_zero_label=args.reduce_zero_label)
    if args.classes:
        raise ValueError("--classes is for --masks; COCO files name their categories")
    return CocoDataset(args.coco, args.images, args.ignore_index, args.background_class)


def parse_threshold(text):
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--threshold must be auto, none or a number, got {text!r}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.max_patches is not None and args.max_patches < 1:
            raise ValueError(f"--max-patches must be positive, got {args.max_patches}")
        if args.max_images is not None and args.max_images < 0:
            raise ValueError("--max-images must be >= 0")
        if args.out and not Path(args.out).resolve().parent.is_dir():
            raise ValueError(f"the folder of --out {args.out} does not exist")
        threshold = parse_threshold(args.threshold)
        dataset = load_dataset(args)
        device = pick_device(args.device)
        segmenter = Segmenter.from_pretrained(args.model, device=device, max_num_patches=args.max_patches,
                                              threshold=threshold, background_labels=args.background,
                                              templates=args.templates, refine=args.refine)
        predict = segmenter_predictor(segmenter, dataset.class_names, dataset.background_index)
        report = evaluate_segmentation(predict, dataset, progress=not args.quiet, max_images=args.max_images)
    except (FGDenseError, ValueError, OSError) as err:
        return fail(str(err))
    report.update(model=args.model, threshold=segmenter.resolve_threshold(threshold), max_patches=args.max_patches)
    if args.out:
        try:
            write_report(args.out, report)
        except OSError as err:
            return fail(f"cannot write {args.out}: {err.strerror or err}")
    print(format_report(report))
    if args.out:
        print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
