"""Image-text retrieval recall (R@1/5/10, both directions) of an FG-CLIP 2 checkpoint, by an official protocol.

    python tools/eval_retrieval.py --ann captions_val2017.json --protocol coco --images val2017 [--model CKPT]
    python tools/eval_retrieval.py --ann image_caption_long_cn.txt --protocol lit-cn [--images DIR]
    torchrun --nproc_per_node K tools/eval_retrieval.py ...      # shards images over K processes

Protocols (each as its official script in fgclip2/eval/): coco (COCO captions JSON, first 5 captions,
lower-cased, short walk, 64 tokens), flickr (JSON list of image + captions, all captions), coco-cn
(COCO_val2014_<id>#zhm#k lines; images under --images/val2014/...), flickr-cna (name#k<TAB>caption, as
written), dci (a folder of JSON files: image, extra_caption; long walk, 196 tokens), share4v (ShareGPT4V
JSON, first 1000), lit-cn, dci-cn, docci-cn (image<TAB>caption, as written, long walk, 196 tokens; image
paths absolute or relative to --images). The similarity is sigmoid(scale * cos + bias), images at the
checkpoint's own processing. Writes into --out report.json (i2t_r1, i2t_r5, i2t_r10, t2i_r1, t2i_r5,
t2i_r10 as fractions, and the counts), ranks.json (every query's rank) and records/ (one per image): the
same command again skips the images already embedded (--overwrite redoes them). --plot also draws
plot.png: the captions that found their image worst, beside it and the image they found first.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402

PROTOCOLS = ["coco", "flickr", "coco-cn", "flickr-cna", "dci", "share4v", "lit-cn", "dci-cn", "docci-cn"]


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder for report.json and records/ (created; "
                        "default ./retrieval_out)", out_default="retrieval_out", precision="fp32",
                        max_patches="checkpoint", font=True)
    parser.add_argument("--ann", required=True, help="the protocol's annotation file (a folder for dci)")
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS, help="which official script's protocol")
    parser.add_argument("--images", default=".", help="folder the file's image names are under (default .)")
    cli.run_flags(parser)
    parser.add_argument("--max-images", type=int, help="only the set's first N images (quick looks; report says incomplete)")
    parser.add_argument("--plot", action="store_true", help="also write plot.png: the captions that found their "
                        "image worst, beside their image and the image found first")
    return parser.parse_args(argv)


def work(argv) -> int:
    from fgdense.eval_tools import check_eval_args, check_images_kept, eval_ending, joined, plot_path, write_sheet

    args = parse_args(argv)
    out, report_path = check_eval_args(args, {"annotation file": args.ann})  # --plot's path and --font too
    plot = plot_path(args, out)
    from fgdense.evaluation.retrieval_data import RANKS, load_retrieval_set, protocol_named

    protocol = protocol_named(args.protocol)
    data = load_retrieval_set(args.ann, protocol)  # a malformed file is one line before torch loads
    check_images_kept({"report": report_path, "ranks": out / RANKS, "plot": plot}, args.images, data.images)
    device = cli.device_of(args.device, args.model)
    from fgdense.embed import Embedder
    from fgdense.evaluation.retrieval import evaluate_retrieval, format_retrieval_report
    with joined(device) as (device, ranks):
        embedder = Embedder.from_pretrained(args.model, device=device, precision=args.precision,
                                            text_mask=args.text_mask, max_num_patches=args.max_patches,
                                            batch_size=args.batch_size)
        with cli.output_folder(out):
            report = evaluate_retrieval(embedder, data, args.images, protocol, out=out, workers=args.workers,
                                        max_images=args.max_images, overwrite=args.overwrite,
                                        progress=not args.quiet, status=cli.status)
    code = eval_ending(report, report_path, format_retrieval_report, args, ranks)
    if plot and ranks.main:  # after the report is safe: a picture that fails cannot cost the evaluation
        import json

        from fgdense.evaluation.retrieval_plot import worst_queries

        found = json.loads((out / RANKS).read_text(encoding="utf-8"))
        write_sheet(plot, lambda: worst_queries(found, args.font))
    return code


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
