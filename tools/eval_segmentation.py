"""Open-vocabulary semantic segmentation quality (per-class IoU, mIoU, pixel accuracy) of a checkpoint.

    # VOC / ADE20K style: images + single-channel label PNGs (same stems, 255 = ignore) + class list
    python tools/eval_segmentation.py --images IMAGES --masks LABEL_PNGS --classes classes.txt [--model CKPT]
        [--background-class background] [--out segeval_out] [--plot]
    # COCO-format mask annotations
    python tools/eval_segmentation.py --images IMAGES --ann instances.json [--background-class background]
    torchrun --nproc_per_node K tools/eval_segmentation.py ...      # shards images over K processes

Class names are the segmenter's labels (``box`` walk; 'cat|猫' synonyms work in the class list). The
--background-class (a name in the class list; for COCO a new class 0 owning unannotated pixels) is
not a label: pixels the segmenter leaves as background are predicted as it. The Segmenter runs on the
bulk runner. Prints a table and writes into --out (default ./segeval_out) report.json and records/ (each
image's pixel counts: the same command again skips the images recorded; --overwrite redoes them);
--plot also writes plot.png beside it: the pixel confusion matrix of the most confused classes (rows
normalised) and per-class IoU, worst first.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder for report.json, records/ and plot.png "
                        "(created; default ./segeval_out)", out_default="segeval_out", precision="fp32", max_patches="auto",
                        font=True)
    parser.add_argument("--images", required=True, help="folder of the images")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--masks", help="folder of label PNGs (pixel = class index, same file stems as the images)")
    source.add_argument("--ann", help="COCO-format annotation JSON with segmentation masks")
    parser.add_argument("--classes", help="class list for --masks: a text file, one name per line, in index order")
    parser.add_argument("--background-class", help="the class that the segmenter's background pixels count as")
    parser.add_argument("--ignore-index", type=int, default=255, help="label value not scored (default 255)")
    parser.add_argument("--reduce-zero-label", action="store_true",
                        help="ADE20K convention: label 0 is not scored and labels 1..K are classes 0..K-1")
    parser.add_argument("--threshold", default="auto", help="background below this cosine: auto, none or a number")
    parser.add_argument("--background", nargs="*", default=[], metavar="LABEL", help="extra labels counted as background")
    parser.add_argument("--templates", action="store_true", help="average each label over prompt templates")
    parser.add_argument("--refine", action="store_true", help="snap boundaries to image edges (guided filter)")
    cli.run_flags(parser)
    parser.add_argument("--regions", choices=["pixels", "superpixels", "objects"],
                        help="what one labelling decision covers: pixels; superpixels (scores averaged over SLIC "
                             "superpixels); objects (each piece of foreground labelled as a whole by its box's "
                             "region embedding). Default: the segmenter's (docs/segmentation.md)")
    parser.add_argument("--max-images", type=int, help="only the first N images (the report says incomplete)")
    parser.add_argument("--plot", action="store_true", help="also write plot.png: the most confused classes' "
                        "confusion matrix and per-class IoU")
    return parser.parse_args(argv)


def load_dataset(args):
    from fgdense.errors import DatasetError
    from fgdense.evaluation.segmentation_data import CocoDataset, FolderDataset

    if args.masks:
        if not args.classes:
            raise DatasetError("--masks needs --classes (the class list, one name per line)")
        return FolderDataset(args.images, args.masks, Path(args.classes), args.ignore_index, args.background_class,
                             reduce_zero_label=args.reduce_zero_label)
    if args.classes:
        raise DatasetError("--classes is for --masks; COCO files name their categories")
    return CocoDataset(args.ann, args.images, args.ignore_index, args.background_class)


def check_args(args):
    """User mistakes, found before any model loading or writing: the segmenter's settings and the outputs."""
    from fgdense.errors import FGDenseError
    from fgdense.io.files import check_output_folder, check_outputs
    from fgdense.io.fonts import choose_font
    from fgdense.segment import Segmenter

    if args.max_images is not None and args.max_images < 0:
        raise FGDenseError("--max-images must be >= 0")
    args.workers = cli.workers_setting(args.workers)
    settings = Segmenter.Settings(max_num_patches=cli.max_patches_setting(args.max_patches),
                                  threshold=cli.threshold_setting(args.threshold), background_labels=args.background,
                                  templates=args.templates, refine=args.refine, precision=args.precision,
                                  text_mask=args.text_mask, batch_size=cli.check_batch_size(args.batch_size),
                                  **({"regions": args.regions} if args.regions else {}))
    if args.font:
        choose_font([], args.font, warn=False)  # a font that does not exist or is not a font: one line now
    out = check_output_folder(args.out)
    report_path = out / "report.json"
    plot_path = out / "plot.png" if args.plot else None
    check_outputs({"report": report_path, "plot": plot_path},
                  {"annotation file": args.ann, "class list": args.classes, "font": args.font}, folders=False)
    return settings, out, report_path, plot_path


def work(argv) -> int:
    args = parse_args(argv)
    dataset = load_dataset(args)  # read and checked before torch loads (check_args's settings need it)
    settings, out, report_path, plot_path = check_args(args)
    device = cli.device_of(args.device, args.model)

    import dataclasses

    from fgdense.bulk.distributed import join, leave
    from fgdense.evaluation.report import write_report
    from fgdense.evaluation.segmentation import evaluate_segmentation, format_report
    from fgdense.segment import Segmenter

    device, ranks = join(device)
    try:
        segmenter = Segmenter.from_pretrained(args.model, device=device, **dataclasses.asdict(settings))
        with cli.output_folder(out):  # every rank: whichever comes first makes it
            report = evaluate_segmentation(segmenter, dataset, out=out, workers=args.workers,
                                           max_images=args.max_images, overwrite=args.overwrite,
                                           progress=not args.quiet, status=cli.status)
    finally:
        leave()
    if ranks.main:
        report.update(model=args.model, threshold=segmenter.resolve_threshold(settings.threshold),
                      settings={"model": args.model, **segmenter.settings_json()})
        write_report(report, report_path, plot_path, format_report(report), args.font)
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
