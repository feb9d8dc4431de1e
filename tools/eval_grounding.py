"""Grounding accuracy of a checkpoint on a COCO-format file: does each category's name pick one of its boxes?

    python tools/eval_grounding.py --ann instances.json --images IMAGES [--model qihoo360/fg-clip2-base]
        [--out groundeval_out] [--max-patches checkpoint] [--templates] [--max-images N]
    torchrun --nproc_per_node K tools/eval_grounding.py ...      # shards images over K processes

In every image with boxes of two categories or more, each category's name is a phrase and the image's
annotated boxes are the candidates; tools/ground.py's Grounder picks a box per phrase, right when the
box is of the phrase's category. It runs on the bulk runner. Prints accuracy against chance and writes
into --out (default ./groundeval_out) report.json (accuracies as fractions) and records/ (each image's
picks: the same command again skips the images recorded; --overwrite redoes them).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder for report.json and records/ (created; "
                        "default ./groundeval_out)", out_default="groundeval_out", precision="fp32", max_patches="checkpoint")
    parser.add_argument("--ann", required=True, help="COCO-format annotation JSON (images, annotations, categories)")
    parser.add_argument("--images", required=True, help="folder holding the images (file_name)")
    parser.add_argument("--templates", action="store_true", help="average each phrase over prompt templates")
    cli.run_flags(parser)
    parser.add_argument("--max-images", type=int, help="only the file's first N images (the report says incomplete)")
    return parser.parse_args(argv)


def check_args(args):
    """User mistakes, found before any model loading or writing; returns the report's path."""
    from fgdense.errors import DatasetError, FGDenseError
    from fgdense.io.files import check_output_folder, check_outputs

    if not Path(args.ann).is_file():
        raise DatasetError(f"annotation file {args.ann} does not exist")
    if not Path(args.images).is_dir():
        raise DatasetError(f"images folder {args.images} does not exist")
    if args.max_images is not None and args.max_images < 0:
        raise FGDenseError("--max-images must be >= 0")
    args.workers = cli.workers_setting(args.workers)
    args.batch_size = cli.check_batch_size(args.batch_size)
    args.max_patches = cli.max_patches_setting(args.max_patches)
    out = check_output_folder(args.out)
    report_path = out / "report.json"
    check_outputs({"report": report_path}, {"annotation file": args.ann}, folders=False)
    return out, report_path


def work(argv) -> int:
    args = parse_args(argv)
    out, report_path = check_args(args)
    device = cli.device_of(args.device, args.model)

    from fgdense.bulk.distributed import join, leave
    from fgdense.evaluation import evaluate_grounding, format_grounding_report, load_boxclass_dataset
    from fgdense.evaluation.report import write_report
    from fgdense.ground import Grounder

    dataset = load_boxclass_dataset(args.ann)
    device, ranks = join(device)
    try:
        grounder = Grounder.from_pretrained(args.model, device=device, max_num_patches=args.max_patches,
                                            precision=args.precision, text_mask=args.text_mask,
                                            templates=args.templates, batch_size=args.batch_size)
        with cli.output_folder(out):  # every rank: whichever comes first makes it
            report = evaluate_grounding(grounder, dataset, args.images, out=out, workers=args.workers,
                                        max_images=args.max_images, overwrite=args.overwrite,
                                        progress=not args.quiet, status=cli.status)
    finally:
        leave()
    if ranks.main:
        report.update(model=args.model, settings={"model": args.model, **grounder.settings_json()})
        write_report(report, report_path, None, format_grounding_report(report))
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
