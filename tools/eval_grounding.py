"""Grounding accuracy of a checkpoint on a COCO-format file: does each category's name pick one of its boxes?

    python tools/eval_grounding.py --ann instances.json --images IMAGES [--model qihoo360/fg-clip2-base]
        [--out groundeval_out] [--max-patches checkpoint] [--templates] [--max-images N]

In every image with boxes of two categories or more, each category's name is a phrase and the image's
annotated boxes are the candidates; tools/ground.py's Grounder picks a box per phrase, right when the
box is of the phrase's category. Prints accuracy against chance and writes --out/report.json (default
./groundeval_out; accuracies as fractions).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder for report.json (created; default "
                        "./groundeval_out)", out_default="groundeval_out", precision="fp32", max_patches="checkpoint")
    parser.add_argument("--ann", required=True, help="COCO-format annotation JSON (images, annotations, categories)")
    parser.add_argument("--images", required=True, help="folder holding the images (file_name)")
    parser.add_argument("--templates", action="store_true", help="average each phrase over prompt templates")
    parser.add_argument("--max-images", type=int, help="stop after this many images (the report says incomplete)")
    return parser.parse_args(argv)


def work(argv) -> int:
    args = parse_args(argv)
    from fgdense.errors import DatasetError, FGDenseError
    from fgdense.io.files import check_output_folder, check_outputs, write_json

    if not Path(args.ann).is_file():
        raise DatasetError(f"annotation file {args.ann} does not exist")
    if not Path(args.images).is_dir():
        raise DatasetError(f"images folder {args.images} does not exist")
    if args.max_images is not None and args.max_images < 0:
        raise FGDenseError("--max-images must be >= 0")
    out = check_output_folder(args.out)
    report_path = out / "report.json"
    check_outputs({"report": report_path}, {"annotation file": args.ann}, folders=False)

    from fgdense.evaluation import evaluate_grounding, format_grounding_report, load_boxclass_dataset
    from fgdense.ground import Grounder

    dataset = load_boxclass_dataset(args.ann)
    grounder = Grounder.from_pretrained(args.model, device=cli.device_of(args.device),
                                        max_num_patches=cli.max_patches_setting(args.max_patches),
                                        precision=args.precision, text_mask=args.text_mask, templates=args.templates)
    cli.status.start(len(dataset.images), "image", "nothing is written before the end")
    report = evaluate_grounding(grounder, dataset, args.images, max_images=args.max_images, progress=not args.quiet)
    report.update(model=args.model, max_patches=args.max_patches, text_mask=args.text_mask, templates=args.templates)
    with cli.output_folder(out):
        write_json(report_path, report)
    print(format_grounding_report(report))
    print(f"report written to {report_path}")
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
