"""Box-classification accuracy (top-1/top-5) of an FG-CLIP 2 checkpoint on a COCO-format annotation file.

    python tools/eval_boxclass.py --ann valid_category_data_total_zh.json --images IMAGES [--model CKPT]
        [--out boxclass_out] [--protocol auto|boxclass-cn|coco|lvis] [--prompts templates.txt] [--plot]
    torchrun --nproc_per_node K tools/eval_boxclass.py ...      # shards images over K processes

BoxClass-CN, COCO instances_val2017.json and LVIS lvis_v1_val.json, each with the official script's
protocol (--protocol auto picks it from the file: LVIS files, Chinese category names, else COCO), or
--prompts FILE for your own templates (one per line, {} for the name). It runs BoxClassifier, the class
users run, on the bulk runner. Prints a table and writes into --out (default ./boxclass_out) report.json,
predictions.jsonl (one line per annotation) and records/ (one record per image): the same command again
skips the images already recorded, so an interrupted run continues (--overwrite redoes them). --plot also
writes plot.png beside the report: the confusion matrix of the most confused categories (rows normalised)
and per-category top-1 accuracy, worst first.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder for report.json, predictions.jsonl, "
                        "records/ and plot.png (created; default ./boxclass_out)", out_default="boxclass_out",
                        precision="fp32", max_patches="checkpoint", font=True)
    parser.add_argument("--ann", required=True, help="COCO-format annotation JSON (images, annotations, categories)")
    parser.add_argument("--images", required=True, help="folder holding the images (file_name, or LVIS coco_url's last part)")
    parser.add_argument("--protocol", default="auto", choices=["auto", "boxclass-cn", "coco", "lvis"],
                        help="how category names become prompts (default auto: from the file)")
    parser.add_argument("--prompts", help="your own prompt templates, one per line with {} for the category name")
    cli.run_flags(parser)
    parser.add_argument("--max-images", type=int, help="only the file's first N images (quick looks; report says incomplete)")
    parser.add_argument("--categories-shown", type=int, default=40, help="per-category rows printed (default 40)")
    parser.add_argument("--plot", action="store_true", help="also write plot.png: the most confused categories' "
                        "confusion matrix and per-category top-1 accuracy")
    return parser.parse_args(argv)


def check_args(args):
    """User mistakes, found before any model loading or writing; returns the output paths."""
    from fgdense.errors import DatasetError, FGDenseError
    from fgdense.io.files import check_output_folder, check_outputs
    from fgdense.io.fonts import choose_font

    if not Path(args.ann).is_file():
        raise DatasetError(f"annotation file {args.ann} does not exist")
    if not Path(args.images).is_dir():
        raise DatasetError(f"images folder {args.images} does not exist")
    if args.prompts and args.protocol != "auto":
        raise FGDenseError("give --protocol or --prompts, not both")
    args.workers = cli.workers_setting(args.workers)
    args.batch_size = cli.check_batch_size(args.batch_size)
    args.max_patches = cli.max_patches_setting(args.max_patches)
    if args.max_images is not None and args.max_images < 0:
        raise FGDenseError("--max-images must be >= 0")
    if args.font:
        choose_font([], args.font, warn=False)  # a font that does not exist or is not a font: one line now
    out = check_output_folder(args.out)
    report, predictions = out / "report.json", out / "predictions.jsonl"
    plot = out / "plot.png" if args.plot else None
    check_outputs({"report": report, "predictions": predictions, "plot": plot},
                  {"annotation file": args.ann, "prompts file": args.prompts, "font": args.font}, folders=False)
    return out, report, plot


def work(argv) -> int:
    args = parse_args(argv)
    out, report_path, plot_path = check_args(args)
    device = cli.device_of(args.device, args.model)

    from fgdense.bulk.distributed import join, leave
    from fgdense.classify import BoxClassifier
    from fgdense.evaluation import evaluate_box_classification, format_report, load_boxclass_dataset
    from fgdense.evaluation.report import write_report

    dataset = load_boxclass_dataset(args.ann)
    device, ranks = join(device)
    try:
        classifier = BoxClassifier.from_pretrained(
            args.model, device=device, precision=args.precision, text_mask=args.text_mask,
            max_num_patches=args.max_patches, batch_size=args.batch_size)
        with cli.output_folder(out):  # every rank: whichever comes first makes it
            report = evaluate_box_classification(
                classifier, dataset, args.images, out=out, protocol=args.protocol, prompts=args.prompts,
                workers=args.workers, max_images=args.max_images, overwrite=args.overwrite,
                progress=not args.quiet, status=cli.status)
    finally:
        leave()
    if ranks.main:
        report.update(model=args.model, settings={"model": args.model, **classifier.settings_json()})
        write_report(report, report_path, plot_path, format_report(report, args.categories_shown), args.font)
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
