"""Open-vocabulary segmentation of images with free-text labels (Chinese or English).

    python tools/segment.py IMAGE_FOLDER_OR_MANIFEST... --labels 电脑 cat "dog|狗" [--model qihoo360/fg-clip2-base]
        [--out segment_out] [--device auto] [--precision auto] [--max-patches auto] [--threshold auto|none|COS]
        [--background sky wall] [--templates] [--refine] [--no-png] [--font PATH] [--text-mask tokenizer|none]
        [--coco results.json] [--overwrite] [--workers auto] [--batch-size 8] [--summary FILE.json]
    torchrun --nproc_per_node 8 tools/segment.py manifest.txt --labels ...   # one share of the images per process

Writes, per image, into --out (default ./segment_out): NAME_overlay.png (coloured masks and a legend),
NAME_heatmaps.png (one score-map panel per label), NAME_labels.png (palette label map: 0 = background,
k = k-th label) and NAME.json (labels, per-label pixel area, mean score and COCO RLE mask). --no-png
writes the label map and the JSON only. A manifest is a .txt file of image paths (one a line) or a .jsonl
file of {"path": ...} lines. Run again, it skips the images whose outputs are complete (--overwrite redoes
them); files that cannot be read are counted and listed in bad_files.jsonl; --coco writes one COCO file
of every image's segments.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402  (light: the heavy imports come after the arguments are parsed)
from fgdense.defaults import DENSE_MAX_PATCHES, max_patches_flag  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder (created; default ./segment_out)",
                        out_default="segment_out", max_patches=max_patches_flag(DENSE_MAX_PATCHES), font=True)
    parser.add_argument("images", nargs="+", help="image files, folders of images and/or manifests (.txt: one image "
                                                  "path a line; .jsonl: one {\"path\": ...} a line)")
    parser.add_argument("--labels", nargs="*", help="what to find: one label per argument; 'cat|猫' averages synonyms")
    parser.add_argument("--threshold", default="auto",
                        help="background below this cosine score: auto = the threshold the checkpoint carries "
                             "(calibrated on its fine-tuning masks) or else the model's 50%% match point, "
                             "none = every pixel gets its best label, or a number")
    parser.add_argument("--background", nargs="*", default=[], metavar="LABEL",
                        help="labels whose pixels count as background (e.g. sky wall floor)")
    parser.add_argument("--templates", action="store_true", help="average each label over prompt templates (EN/ZH)")
    parser.add_argument("--refine", action="store_true", help="snap mask boundaries to image edges (guided filter)")
    parser.add_argument("--regions", choices=["pixels", "superpixels", "objects"],
                        help="what one labelling decision covers: pixels; superpixels (scores averaged over SLIC "
                             "superpixels); objects (each piece of foreground labelled as a whole by its box's "
                             "region embedding). Default: the segmenter's (docs/segmentation.md)")
    parser.add_argument("--no-png", action="store_true", help="write the label map and JSON only (no pictures)")
    cli.bulk_flags(parser)
    return parser.parse_args(argv)


def check_args(args):
    """Every user mistake, found before the model is loaded or anything is written."""
    from fgdense.bulk.command import plan
    from fgdense.errors import LabelError
    from fgdense.io.files import check_output_folder
    from fgdense.io.fonts import choose_font
    from fgdense.io.sources import Sources
    from fgdense.labels import check_labels

    if not args.labels:
        raise LabelError("give at least one label to find: --labels L1 L2 ...")
    labels = check_labels(args.labels)
    if len(labels) > 255:
        raise LabelError(f"at most 255 labels fit a palette label map, got {len(labels)}")
    check_labels(labels + list(args.background), "label (including --background labels)")
    if args.regions == "superpixels":
        from fgdense.superpixels import check_superpixels_available

        check_superpixels_available()  # scikit-image is optional: say so now, not once per image
    budget = cli.max_patches_setting(args.max_patches)
    threshold = cli.threshold_setting(args.threshold)
    workers = cli.workers_setting(args.workers)
    sources = Sources(args.images)
    font = None if args.no_png else choose_font(labels, args.font)
    out = check_output_folder(args.out)
    options = plan(sources, out, "segment", not args.no_png, coco=args.coco, summary=args.summary, workers=workers,
                   batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.quiet)
    return labels, budget, threshold, sources, font, options


def work(argv) -> int:
    args = parse_args(argv)
    labels, budget, threshold, sources, font, options = check_args(args)
    device = cli.device_of(args.device, args.model)

    from fgdense.bulk.command import execute
    from fgdense.bulk.jobs import SegmentJob
    from fgdense.dense import resolve_budget
    from fgdense.segment import Segmenter

    def make_job(device):
        segmenter = Segmenter.from_pretrained(
            args.model, device=device, max_num_patches=budget, threshold=threshold, background_labels=args.background,
            templates=args.templates, refine=args.refine, precision=args.precision, text_mask=args.text_mask,
            batch_size=options.batch_size, **({"regions": args.regions} if args.regions else {}))
        return SegmentJob(segmenter, options.out, labels, pictures=not args.no_png, font=font, model_name=args.model,
                          cap=resolve_budget(budget, device))

    summary, ranks = execute(make_job, sources, options, device, cli.status)
    return cli.bulk_ending(summary, ranks, options.out)


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
