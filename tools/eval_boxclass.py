"""Box-classification accuracy (top-1/top-5) of an FG-CLIP 2 checkpoint on a COCO-format annotation file.

    python tools/eval_boxclass.py --ann valid_category_data_total_zh.json --images IMAGES --model CKPT \
        [--out report.json] [--predictions preds.jsonl [--resume]] [--workers 4]
    torchrun --nproc_per_node K tools/eval_boxclass.py ...      # shards images over K processes

BoxClass-CN, COCO instances_val2017.json and LVIS lvis_v1_val.json all work: the protocol of FG-CLIP 2's
published numbers (category names as box-walk prompts, the checkpoint's default image processing,
RoIAlign 1x1 region embeddings, cosine top-k). Prints a table; --out writes the JSON report.
"""

import argparse
import os
import sys
from pathlib import Path

import torch

from fgdense import FGCLIP2Model
from fgdense.cli import fail, pick_device
from fgdense.errors import FGDenseError
from fgdense.files import write_json
from fgdense.evaluation.boxclass import evaluate_box_classification, format_report, load_boxclass_dataset


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ann", required=True, help="COCO-format annotation JSON (images, annotations, categories)")
    parser.add_argument("--images", required=True, help="folder holding the images (file_name, or LVIS coco_url's last part)")
    parser.add_argument("--model", required=True, help="checkpoint folder or model-hub id")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--predictions", help="write per-annotation predictions here (JSON lines); needed for --resume")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its --predictions file")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="background image-decoding processes per rank (default min(4, CPUs))")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    parser.add_argument("--max-images", type=int, help="stop after this many images (quick looks; report says incomplete)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="auto = bf16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--categories-shown", type=int, default=40, help="per-category rows printed (default 40)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def check_args(args):
    """User mistakes, found before any model loading or writing."""
    if not Path(args.ann).is_file():
        return f"annotation file {args.ann} does not exist"
    if not Path(args.images).is_dir():
        return f"images folder {args.images} does not exist"
    if args.resume and not args.predictions:
        return "--resume needs --predictions (the predictions file of the interrupted run)"
    for option, value in (("--out", args.out), ("--predictions", args.predictions)):
        if value and not Path(value).resolve().parent.is_dir():
            return f"the folder of {option} {value} does not exist"
    if args.out and args.predictions and Path(args.out).resolve() == Path(args.predictions).resolve():
        return "--out and --predictions must be different files"
    if args.workers < 0 or args.batch_size < 1 or (args.max_images is not None and args.max_images < 0):
        return "--workers must be >= 0, --batch-size >= 1 and --max-images >= 0"
    return None


def setup_distributed(device):
    """Join the torchrun process group (gloo on CPU, nccl on GPU); each rank gets its own GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        return fail(problem)
    try:
        device = setup_distributed(pick_device(args.device))
    except (ValueError, RuntimeError) as err:
        return fail(str(err))
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    try:
        dataset = load_boxclass_dataset(args.ann)
        model = FGCLIP2Model.from_pretrained(args.model, device=device)
        report = evaluate_box_classification(
            model, dataset, args.images, batch_size=args.batch_size, workers=args.workers,
            predictions=args.predictions, resume=args.resume, max_images=args.max_images,
            precision=args.precision, progress=not args.quiet,
        )
    except (FGDenseError, ValueError, OSError) as err:
        return fail(str(err))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if rank == 0:
        if args.out:
            write_json(args.out, report)
        print(format_report(report, args.categories_shown))
        if args.out:
            print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
