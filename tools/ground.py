"""Find the regions that phrases describe (English or Chinese), among given boxes or from scratch.

    python tools/ground.py IMAGE --phrases "the red mug on the left" "一只猫" [--model CKPT] [--out ground_out]
        [--boxes boxes.json] [--max-proposals 5] [--proposal-threshold otsu] [--max-patches checkpoint] [--no-png]
    python tools/ground.py FOLDER_OR_MANIFEST... --phrases ... [--coco grounded.json] [--overwrite] [--workers auto]
    torchrun --nproc_per_node 8 tools/ground.py manifest.jsonl --phrases ...   # a share of the images each

With --boxes (a JSON list of [x1, y1, x2, y2] pixel boxes, for one image) or per-image "boxes" in a JSONL
manifest ({"path": ..., "boxes": [...]} a line): every phrase is scored against every box and its best box
reported. Without: boxes are proposed from each phrase's heatmap over FG-CLIP 2's dense features
(thresholded connected regions, ranked by region-embedding score). Phrases of up to 64 tokens use the box
walk, longer ones the long walk. Writes into --out (default ./ground_out) NAME.json and NAME.png, each
phrase's best box (unless --no-png). Run again, it skips the images whose outputs are complete; --coco
writes one COCO file of every phrase's box.
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402
from fgdense.defaults import REGION_MAX_PATCHES, max_patches_flag  # noqa: E402

def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder (created; default ./ground_out)",
                        out_default="ground_out", max_patches=max_patches_flag(REGION_MAX_PATCHES), font=True)
    parser.add_argument("images", nargs="+", help="image files, folders of images and/or manifests (.txt or .jsonl)")
    parser.add_argument("--phrases", nargs="+", required=True, help="phrases to ground")
    parser.add_argument("--boxes", help="JSON file of candidate [x1, y1, x2, y2] pixel boxes of the one image given "
                                        "(default: propose boxes)")
    parser.add_argument("--proposal-threshold", default="otsu",
                        help="proposals: 'otsu' (default: Otsu's threshold of each heatmap) or a level from the "
                             "heatmap's min (0) to its max (1) that a region must reach")
    parser.add_argument("--max-proposals", type=int, default=5, help="proposals kept per phrase (default 5)")
    parser.add_argument("--no-png", action="store_true", help="write the JSON only")
    cli.bulk_flags(parser)
    return parser.parse_args(argv)


def check_args(args):
    """Every user mistake, found before the model loads and before anything is written."""
    from fgdense.bulk.command import box_sources, plan
    from fgdense.io.box_pictures import short_caption
    from fgdense.io.files import check_output_folder
    from fgdense.io.fonts import choose_font
    from fgdense.labels import check_phrases

    phrases = check_phrases(args.phrases)
    budget = cli.max_patches_setting(args.max_patches)
    workers = cli.workers_setting(args.workers)
    sources, _ = box_sources(args.images, args.boxes)
    out = check_output_folder(args.out)
    options = plan(sources, out, "ground", not args.no_png, coco=args.coco, summary=args.summary, workers=workers,
                   batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.quiet,
                   also={"boxes file": args.boxes})
    font = None if args.no_png else choose_font([short_caption(p) for p in phrases], args.font)
    from fgdense.ground import Grounder  # torch: once every input above is known to be right

    settings = Grounder.Settings(proposal_threshold=args.proposal_threshold, max_proposals=args.max_proposals,
                                 max_num_patches=budget, precision=args.precision, text_mask=args.text_mask)
    return phrases, settings, sources, font, options


def work(argv) -> int:
    args = parse_args(argv)
    phrases, settings, sources, font, options = check_args(args)
    device = cli.device_of(args.device, args.model)

    from fgdense.bulk.command import execute
    from fgdense.bulk.jobs import GroundJob
    from fgdense.dense import resolve_budget
    from fgdense.ground import Grounder

    def make_job(device):
        chosen = dataclasses.replace(settings, batch_size=options.batch_size)
        grounder = Grounder.from_pretrained(args.model, device=device, **dataclasses.asdict(chosen))
        return GroundJob(grounder, options.out, phrases, pictures=not args.no_png, font=font, model_name=args.model,
                         cap=resolve_budget(settings.max_num_patches, device))

    summary, ranks = execute(make_job, sources, options, device, cli.status)
    return cli.bulk_ending(summary, ranks, options.out)


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
