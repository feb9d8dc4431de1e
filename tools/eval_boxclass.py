"""Box-classification accuracy (top-1/top-5) of an FG-CLIP 2 checkpoint on a COCO-format annotation file.

    python tools/eval_boxclass.py --ann valid_category_data_total_zh.json --images IMAGES [--model CKPT]
        [--out boxclass_out] [--protocol auto|boxclass-cn|coco|lvis] [--prompts templates.txt] [--resume] [--plot]
    torchrun --nproc_per_node K tools/eval_boxclass.py ...      # shards images over K processes

BoxClass-CN, COCO instances_val2017.json and LVIS lvis_v1_val.json, each with the official script's
protocol (--protocol auto picks it from the file: LVIS files, Chinese category names, else COCO), or
--prompts FILE for your own templates (one per line, {} for the name). Prints a table and writes into
--out (default ./boxclass_out) report.json and predictions.jsonl (one line per annotation; --resume
continues an interrupted run from it). --plot also writes plot.png beside the report: the confusion
matrix of the most confused categories (rows normalised) and per-category top-1 accuracy, worst first.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder for report.json, predictions.jsonl and "
                        "plot.png (created; default ./boxclass_out)", out_default="boxclass_out", precision="fp32",
                        font=True)
    parser.add_argument("--ann", required=True, help="COCO-format annotation JSON (images, annotations, categories)")
    parser.add_argument("--images", required=True, help="folder holding the images (file_name, or LVIS coco_url's last part)")
    parser.add_argument("--protocol", default="auto", choices=["auto", "boxclass-cn", "coco", "lvis"],
                        help="how category names become prompts (default auto: from the file)")
    parser.add_argument("--prompts", help="your own prompt templates, one per line with {} for the category name")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from --out's predictions")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="background image-decoding processes per rank (default min(4, CPUs))")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    parser.add_argument("--max-images", type=int, help="stop after this many images (quick looks; report says incomplete)")
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
    if args.workers < 0 or args.batch_size < 1 or (args.max_images is not None and args.max_images < 0):
        raise FGDenseError("--workers must be >= 0, --batch-size >= 1 and --max-images >= 0")
    if args.font:
        choose_font([], args.font, warn=False)  # a font that does not exist or is not a font: one line now
    out = check_output_folder(args.out)
    report, predictions = out / "report.json", out / "predictions.jsonl"
    plot = out / "plot.png" if args.plot else None
    check_outputs({"report": report, "predictions": predictions, "plot": plot},
                  {"annotation file": args.ann, "prompts file": args.prompts, "font": args.font}, folders=False)
    return out, report, predictions, plot


def setup_distributed(device):
    """Join the torchrun process group (gloo on CPU, nccl on GPU); each rank gets its own GPU."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def work(argv) -> int:
    args = parse_args(argv)
    out, report_path, predictions, plot_path = check_args(args)
    device = cli.device_of(args.device)

    import torch

    from fgdense import FGCLIP2Model
    from fgdense.evaluation import evaluate_box_classification, format_report, load_boxclass_dataset
    from fgdense.io.files import write_all, write_json

    device = setup_distributed(device)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    try:
        dataset = load_boxclass_dataset(args.ann)
        model = FGCLIP2Model.from_pretrained(args.model, device=device)
        with cli.output_folder(out):  # every rank: whichever comes first makes it
            cli.status.start(len(dataset.images), "image", f"--resume continues from {predictions}")
            report = evaluate_box_classification(
                model, dataset, args.images, protocol=args.protocol, prompts=args.prompts, text_mask=args.text_mask,
                batch_size=args.batch_size, workers=args.workers, predictions=predictions, resume=args.resume,
                max_images=args.max_images, precision=args.precision, progress=not args.quiet, status=cli.status,
            )
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if rank == 0:
        report["model"] = args.model
        write_json(report_path, report)
        print(format_report(report, args.categories_shown))
        print(f"report written to {report_path}")
        if plot_path is not None:
            # After the report is safe: a picture that fails to draw must not cost the evaluation.
            from fgdense.evaluation.plots import write_plot

            write_all([(plot_path, write_plot(report, font=args.font))])
            print(f"plot written to {plot_path}")
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
