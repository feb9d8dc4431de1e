"""Open-vocabulary segmentation of images with free-text labels (Chinese or English).

    python tools/segment.py IMAGE_OR_FOLDER... --labels 电脑 cat "dog|狗" [--model qihoo360/fg-clip2-base]
        [--out segment_out] [--device auto] [--precision auto] [--max-patches auto] [--threshold auto|none|COS]
        [--background sky wall] [--templates] [--refine] [--no-png] [--font PATH] [--text-mask tokenizer|none]

Writes, per image, into --out (default ./segment_out): NAME_overlay.png (coloured masks and a legend),
NAME_heatmaps.png (one score-map panel per label), NAME_labels.png (palette label map: 0 = background,
k = k-th label) and NAME.json (labels, per-label pixel area, mean score and COCO RLE mask). --no-png
writes the label map and the JSON only.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402  (light: the heavy imports come after the arguments are parsed)


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder (created; default ./segment_out)",
                        out_default="segment_out", max_patches="auto", font=True)
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--labels", nargs="*", help="what to find: one label per argument; 'cat|猫' averages synonyms")
    parser.add_argument("--threshold", default="auto",
                        help="background below this cosine score: auto = the model's 50%% match point, "
                             "none = every pixel gets its best label, or a number")
    parser.add_argument("--background", nargs="*", default=[], metavar="LABEL",
                        help="labels whose pixels count as background (e.g. sky wall floor)")
    parser.add_argument("--templates", action="store_true", help="average each label over prompt templates (EN/ZH)")
    parser.add_argument("--refine", action="store_true", help="snap mask boundaries to image edges (guided filter)")
    parser.add_argument("--no-png", action="store_true", help="write the label map and JSON only (no pictures)")
    return parser.parse_args(argv)


def check_args(args):
    """Every user mistake, found before the model is loaded or anything is written."""
    from fgdense.errors import LabelError
    from fgdense.io.files import check_output_folder
    from fgdense.io.fonts import choose_font
    from fgdense.io.inputs import expand_inputs
    from fgdense.prompts import check_labels

    if not args.labels:
        raise LabelError("give at least one label to find: --labels L1 L2 ...")
    labels = check_labels(args.labels)
    if len(labels) > 255:
        raise LabelError(f"at most 255 labels fit a palette label map, got {len(labels)}")
    check_labels(labels + list(args.background), "label (including --background labels)")
    budget = cli.max_patches_setting(args.max_patches)
    threshold = cli.threshold_setting(args.threshold)
    paths = expand_inputs(args.images)
    font = None if args.no_png else choose_font(labels, args.font)
    out = check_output_folder(args.out)
    return labels, budget, threshold, paths, font, out


def work(argv) -> int:
    args = parse_args(argv)
    labels, budget, threshold, paths, font, out = check_args(args)
    device = cli.device_of(args.device)

    from fgdense.dense import resolve_budget
    from fgdense.io.outputs import segment_files
    from fgdense.segment import Segmenter

    segmenter = Segmenter.from_pretrained(args.model, device=device, max_num_patches=budget, threshold=threshold,
                                          background_labels=args.background, templates=args.templates,
                                          refine=args.refine, precision=args.precision, text_mask=args.text_mask)
    extra = {"model": args.model, "max_patches": resolve_budget(budget, device) or "checkpoint"}
    cli.status.start(len(paths), "image", f"outputs are in {out}")
    report = segment_files(segmenter, paths, labels, out, font=font, progress=not args.quiet, extra_json=extra,
                           pictures=not args.no_png, status=cli.status)
    print(f"wrote {report.files_written} files for {len(report.written)} image(s) to {out}")
    for path, why in report.failed.items():
        print(f"error: skipped {path}: {why}", file=sys.stderr)
    if report.failed:
        return cli.fail(f"{len(report.failed)} of {len(paths)} image(s) could not be read")
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
