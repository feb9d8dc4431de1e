"""Label detector boxes with free-text labels (English or Chinese) by FG-CLIP 2 region embeddings.

    python tools/classify_boxes.py IMAGE --boxes boxes.json --labels cat "杯子|cup" dog [--model CKPT]
        [--out classify_out] [--top-k 5] [--templates] [--max-patches checkpoint] [--no-png] [--font PATH]
    python tools/classify_boxes.py manifest.jsonl --labels ... [--coco relabelled.json] [--overwrite] [--workers auto]
    torchrun --nproc_per_node 8 tools/classify_boxes.py manifest.jsonl --labels ...   # a share of the images each

boxes.json: a list of [x1, y1, x2, y2] in image pixels (or of {"xyxy": [...]} objects, or the JSON this
tool writes), for one image. For many images, a JSONL manifest gives each its boxes: one
{"path": "img.jpg", "boxes": [[x1, y1, x2, y2], ...]} a line. Writes into --out (default ./classify_out)
NAME.json (per box: best label, its probability softmax(100 * cosine), cosine, top-k) and NAME.png, the
labelled boxes (unless --no-png). Run again, it skips the images whose outputs are complete; --coco writes
one COCO file of every relabelled box.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402
from fgdense.defaults import REGION_MAX_PATCHES, max_patches_flag  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder (created; default ./classify_out)",
                        out_default="classify_out", max_patches=max_patches_flag(REGION_MAX_PATCHES), font=True)
    parser.add_argument("images", nargs="+", help="image file (with --boxes), or JSONL manifests of images and boxes, "
                                                  "folders or more images")
    parser.add_argument("--boxes", help="JSON file of [x1, y1, x2, y2] pixel boxes of the one image given")
    parser.add_argument("--labels", nargs="*", default=[], help='labels; "cat|猫" averages synonyms')
    parser.add_argument("--labels-file", help="text file with one label per line (added to --labels)")
    parser.add_argument("--top-k", type=int, default=5, help="labels listed per box (default 5)")
    parser.add_argument("--templates", action="store_true", help="average prompt templates (a photo of a ...)")
    parser.add_argument("--no-png", action="store_true", help="write the JSON only")
    cli.bulk_flags(parser)
    return parser.parse_args(argv)


def check_args(args):
    """Every user mistake, found before the model loads and before anything is written."""
    from fgdense.bulk.command import box_sources, plan
    from fgdense.errors import BoxError, FGDenseError
    from fgdense.io.files import check_output_folder
    from fgdense.io.fonts import choose_font
    from fgdense.io.inputs import tool_labels

    labels = tool_labels(args.labels, args.labels_file)
    if args.top_k < 1:
        raise FGDenseError("--top-k must be at least 1")
    workers = cli.workers_setting(args.workers)
    sources, boxes = box_sources(args.images, args.boxes)
    if boxes is None and not any(path.suffix.lower() == ".jsonl" for path in sources.manifests):
        raise BoxError("give the boxes: --boxes FILE for one image, or a JSONL manifest with each image's boxes "
                       '({"path": ..., "boxes": [[x1, y1, x2, y2], ...]} a line)')
    budget = cli.max_patches_setting(args.max_patches)
    out = check_output_folder(args.out)
    options = plan(sources, out, "classify", not args.no_png, coco=args.coco, summary=args.summary, workers=workers,
                   batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.quiet,
                   also={"boxes file": args.boxes, "labels file": args.labels_file})
    font = None if args.no_png else choose_font(labels, args.font)
    return labels, budget, sources, font, options


def work(argv) -> int:
    args = parse_args(argv)
    labels, budget, sources, font, options = check_args(args)
    device = cli.device_of(args.device, args.model)

    from fgdense.bulk.command import execute
    from fgdense.bulk.jobs import ClassifyJob
    from fgdense.classify import BoxClassifier
    from fgdense.dense import resolve_budget

    def make_job(device):
        classifier = BoxClassifier.from_pretrained(args.model, device=device, max_num_patches=budget,
                                                   templates=args.templates, top_k=args.top_k,
                                                   precision=args.precision, text_mask=args.text_mask,
                                                   batch_size=options.batch_size)
        return ClassifyJob(classifier, options.out, labels, pictures=not args.no_png, font=font, model_name=args.model,
                           cap=resolve_budget(budget, device))

    summary, ranks = execute(make_job, sources, options, device, cli.status)
    return cli.bulk_ending(summary, ranks, options.out)


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
