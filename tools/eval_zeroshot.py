"""Zero-shot classification accuracy (top-1/top-5) of an FG-CLIP 2 checkpoint on class folders of images.

    python tools/eval_zeroshot.py --images imagenet/val [--model CKPT] [--out zeroshot_out]
    python tools/eval_zeroshot.py --images imagenetv2-matched-frequency-format-val      # folders 0..999
    python tools/eval_zeroshot.py --images my_set --classnames names.txt [--templates templates.txt] [--plot]
    torchrun --nproc_per_node K tools/eval_zeroshot.py ...      # shards images over K processes

The protocol of the official eval_IN1K.py / inv2.py: each class name put into every template (default
CLIP's 80 ImageNet templates), lower-cased, short walk, 64 tokens, the normalised embeddings averaged;
images at a fixed 1024-patch budget; sigmoid(scale * cos + bias). A class is a sub-folder of --images:
its index is its place among the sorted folder names, or the folder's number when every name is a number
(ImageNet-v2). --classnames gives one name per line in index order (default ImageNet-1k's 1000). Writes
into --out report.json (top1, top5 as fractions, the counts, per-class accuracy and the top-1 confusion
counts), predictions.jsonl (each image's five best classes) and records/ (one per image): the same command
again skips the images already classified (--overwrite redoes them). --plot also writes plot.png beside the
report: the confusion matrix of the most confused classes (rows normalised) and per-class top-1 accuracy,
worst first.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder for report.json, predictions.jsonl, "
                        "records/ and plot.png (created; default ./zeroshot_out)", out_default="zeroshot_out",
                        precision="fp32", max_patches="1024", font=True)
    parser.add_argument("--images", required=True, help="folder of class folders of images (ImageFolder layout)")
    parser.add_argument("--classnames", help="class names, one per line in class-index order (default: ImageNet-1k's)")
    parser.add_argument("--templates", help="prompt templates, one per line with {} for the name (default: CLIP's 80)")
    cli.run_flags(parser)
    parser.add_argument("--max-images", type=int, help="only the first N images (quick looks; report says incomplete)")
    parser.add_argument("--plot", action="store_true", help="also write plot.png: the most confused classes' "
                        "confusion matrix and per-class top-1 accuracy")
    return parser.parse_args(argv)


def work(argv) -> int:
    from fgdense.errors import OutputError
    from fgdense.eval_tools import check_eval_args, eval_ending, joined

    args = parse_args(argv)
    out, report_path = check_eval_args(args, {"class names file": args.classnames, "templates file": args.templates})
    images, inside = Path(args.images).resolve(), out.resolve()
    if inside == images or images in inside.parents:  # every file of a class folder is one of its images
        raise OutputError(f"--out {out} is inside the images folder {args.images}: the next run would read its "
                          "files (plot.png, records/) as images or classes; choose an output folder outside it")
    device = cli.device_of(args.device, args.model)
    from fgdense.embed import Embedder
    from fgdense.evaluation.zeroshot import evaluate_zeroshot, format_zeroshot_report, read_lines

    classnames = read_lines(args.classnames, "class names") if args.classnames else None
    templates = read_lines(args.templates, "templates") if args.templates else None
    with joined(device) as (device, ranks):
        embedder = Embedder.from_pretrained(args.model, device=device, precision=args.precision,
                                            text_mask=args.text_mask, max_num_patches=args.max_patches,
                                            batch_size=args.batch_size)
        with cli.output_folder(out):
            report = evaluate_zeroshot(embedder, args.images, classnames, templates, out=out, workers=args.workers,
                                       max_images=args.max_images, overwrite=args.overwrite,
                                       progress=not args.quiet, status=cli.status)
    return eval_ending(report, report_path, format_zeroshot_report, args, ranks, report_plot=True)


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
