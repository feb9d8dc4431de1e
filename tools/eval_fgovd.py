"""FG-OVD accuracy (fine-grained open-vocabulary detection) of an FG-CLIP 2 checkpoint on one JSONL file.

    python tools/eval_fgovd.py --ann h_attributes_llava.jsonl --images COCO_DIR [--model CKPT] [--out fgovd_out]
        [--plot]
    torchrun --nproc_per_node K tools/eval_fgovd.py ...      # shards images over K processes

The protocol of the official fgovd_bbox_roi.py: each line's box (img_path under --images, bbox x, y, w, h)
is pooled by RoIAlign from its image's dense features (BoxClassifier's region embedding, the checkpoint's
own processing), its positive then negative texts lower-cased with the box walk (64 tokens); right when the
first text scores highest (a tie counts as right). Accuracy is per file (the hard / medium / easy / trivial
splits are separate files). Prints the accuracy and writes into --out report.json, predictions.jsonl (each
line's outcome) and records/ (one record per image): the same command again skips the images already
recorded (--overwrite redoes them). --plot also draws plot.png: the boxes beaten by most, each as its image
with the box, its first (positive) text and the text that won, with their probabilities.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder for report.json, predictions.jsonl, "
                        "records/ and plot.png (created; default ./fgovd_out)", out_default="fgovd_out",
                        precision="fp32", max_patches="checkpoint", font=True)
    parser.add_argument("--ann", required=True, help="FG-OVD JSONL file (img_path, bbox, pos_expression, neg_expression)")
    parser.add_argument("--images", required=True, help="folder the img_path names are under")
    cli.run_flags(parser)
    parser.add_argument("--max-images", type=int, help="only the file's first N images (quick looks; report says incomplete)")
    parser.add_argument("--plot", action="store_true", help="also write plot.png: the boxes the model got most "
                        "wrong, with their first text and the text that won")
    return parser.parse_args(argv)


def work(argv) -> int:
    from fgdense.eval_tools import check_eval_args, check_images_kept, eval_ending, joined, plot_path, write_sheet

    args = parse_args(argv)
    out, report_path = check_eval_args(args, {"annotation file": args.ann})  # --plot's path and --font too
    plot = plot_path(args, out)
    device = cli.device_of(args.device, args.model)
    from fgdense.classify import BoxClassifier
    from fgdense.evaluation.fgovd import PREDICTIONS, evaluate_fgovd, format_fgovd_report, load_fgovd

    lines = load_fgovd(args.ann)  # a malformed file is one line before the model loads
    check_images_kept({"report": report_path, "predictions": out / PREDICTIONS, "plot": plot}, args.images,
                      {line.image for line in lines})
    with joined(device) as (device, ranks):
        classifier = BoxClassifier.from_pretrained(
            args.model, device=device, precision=args.precision, text_mask=args.text_mask,
            max_num_patches=args.max_patches, batch_size=args.batch_size)
        with cli.output_folder(out):
            report = evaluate_fgovd(classifier, args.ann, args.images, out=out, workers=args.workers,
                                    max_images=args.max_images, overwrite=args.overwrite,
                                    progress=not args.quiet, status=cli.status)
    report["lines"] = len(lines)
    code = eval_ending(report, report_path, format_fgovd_report, args, ranks)
    if plot and ranks.main:  # after the report is safe: a picture that fails cannot cost the evaluation
        import json

        from fgdense.evaluation.fgovd_plot import worst_boxes

        rows = (out / PREDICTIONS).read_text(encoding="utf-8").splitlines()
        predictions = [json.loads(row) for row in rows if row.strip()]
        write_sheet(plot, lambda: worst_boxes(predictions, lines, args.images, args.font))
    return code


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
