"""Stage-2 training throughput: steps per second and peak GPU memory for one training step.

A randomly initialised network of the chosen size (both towers, from ``fgdense.config.ARCHITECTURES``;
timings do not depend on the weights) trains on synthetic batches shaped like FineHARD ones: images at a
fixed patch budget, long / short captions, box texts and hard negatives. bf16 autocast and gradient
checkpointing as in configs/train/base.py.

    python benchmarks/benchmark_train.py --arch base --batch-size 32 --patches 1024      # the GPU benchmark
    python benchmarks/benchmark_train.py --arch tiny --batch-size 2 --patches 64 --steps 2 --warmup 1 --device cpu
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: fgdense and benchmarks

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from benchmarks.harness import synchronize  # noqa: E402
from fgdense import cli  # noqa: E402
from fgdense.config import ARCHITECTURES, RELEASED_VOCAB_SIZE  # noqa: E402
from fgdense.errors import OutputError  # noqa: E402
from fgdense.io.files import check_outputs, write_json  # noqa: E402

TINY_VOCAB_SIZE = 600  # the tiny architecture is for quick CPU runs: a small embedding table


def vocab_size(arch: str) -> int:
    return TINY_VOCAB_SIZE if arch == "tiny" else RELEASED_VOCAB_SIZE


def build_network(arch: str):
    from fgdense.config import architecture_config
    from fgdense.model import FGCLIP2Model

    return FGCLIP2Model(architecture_config(arch, vocab_size(arch)))


def synthetic_batch(batch: int, patches: int, boxes: int, hard_boxes: int, negatives: int, vocab: int, device):
    side = int(patches ** 0.5)
    g = torch.Generator().manual_seed(0)
    ids = lambda *shape: torch.randint(2, vocab, shape, generator=g)  # noqa: E731
    corners = torch.rand(batch, max(boxes, hard_boxes), 2, generator=g) * 0.5
    xyxy = torch.cat([corners, corners + 0.25 + 0.25 * torch.rand(corners.shape, generator=g)], dim=-1)
    data = dict(
        pixel_values=torch.randn(batch, side * side, 3 * 16 * 16, generator=g),
        pixel_attention_mask=torch.ones(batch, side * side, dtype=torch.long),
        spatial_shapes=torch.tensor([[side, side]] * batch),
        long_ids=ids(batch, 196), short_ids=ids(batch, 64),
        boxes=xyxy[:, :boxes], box_ids=ids(batch, boxes, 64), box_counts=torch.full((batch,), boxes),
        hard_boxes=xyxy[:, :hard_boxes], hard_ids=ids(batch, hard_boxes, 1 + negatives, 64),
        hard_counts=torch.full((batch,), hard_boxes),
    )
    data = {k: v.to(device) for k, v in data.items()}
    data.update(size=batch, skipped=0, epoch=None)
    return data


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=list(ARCHITECTURES), default="base", help="model size (default base)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patches", type=int, default=1024, help="patches per image (a square grid)")
    parser.add_argument("--boxes", type=int, default=4, help="region boxes per image")
    parser.add_argument("--hard-boxes", type=int, default=2, help="boxes with hard negatives per image")
    parser.add_argument("--negatives", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--no-checkpointing", action="store_true", help="turn gradient checkpointing off")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                        help="bf16: autocast over fp32 weights, as the training config (default); fp32: none")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="also write the result to this JSON file")
    return parser.parse_args(argv)


def check_args(args):
    """A one-line message for a user mistake, found before anything runs or is written; else None."""
    if args.patches < 1 or int(args.patches ** 0.5) ** 2 != args.patches:
        return f"--patches must be a square number (e.g. 1024), got {args.patches}"
    if min(args.batch_size, args.steps, args.boxes, args.hard_boxes, args.negatives) < 1 or args.warmup < 0:
        return "--batch-size, --steps, --boxes, --hard-boxes and --negatives must be positive, --warmup not negative"
    try:
        check_outputs({"--out": args.out})
    except OutputError as err:
        return str(err)
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        return cli.fail(problem)
    device = cli.device_of(args.device)

    from fgdense.train.model import FGCLIP2Stage2

    torch.manual_seed(0)
    model = FGCLIP2Stage2(network=build_network(args.arch), gradient_checkpointing=not args.no_checkpointing).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = synthetic_batch(args.batch_size, args.patches, args.boxes, args.hard_boxes, args.negatives,
                            vocab_size(args.arch), device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step():
        with autocast:
            losses = model(**batch)
        loss = sum(v for k, v in losses.items() if k.startswith("loss"))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    result = dict(arch=args.arch, batch_size=args.batch_size, patches=args.patches, precision=args.precision,
                  gradient_checkpointing=not args.no_checkpointing, device=str(device),
                  gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                  steps_per_s=round(args.steps / elapsed, 3), images_per_s=round(args.steps * args.batch_size / elapsed, 1),
                  peak_memory_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
                  last_loss=round(loss, 4))
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
