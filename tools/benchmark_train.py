"""Stage-2 training throughput: steps per second and peak GPU memory for one training step.

A randomly initialised network of the chosen size (timings do not depend on the weights) trains on
synthetic batches shaped like FineHARD ones: images at a fixed patch budget, long / short captions,
box texts and hard negatives. bf16 autocast and gradient checkpointing as in configs/train/base.py.

    python tools/benchmark_train.py --size base --batch-size 32 --patches 1024      # the GPU benchmark
    python tools/benchmark_train.py --size tiny --batch-size 2 --patches 64 --steps 2 --warmup 1 --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from fgdense.cli import fail, pick_device

# Released FG-CLIP 2 sizes (SigLIP 2 NaFlex towers): hidden, layers, heads, MLP width, vocabulary.
SIZES = {
    "tiny": dict(hidden=32, layers=1, heads=2, mlp=64, vocab=600),
    "base": dict(hidden=768, layers=12, heads=12, mlp=3072, vocab=256000),
    "large": dict(hidden=1024, layers=24, heads=16, mlp=4096, vocab=256000),
    "so400m": dict(hidden=1152, layers=27, heads=16, mlp=4304, vocab=256000),
}


def build_network(size: str):
    from fgdense.model.config import FGCLIP2Config
    from fgdense.model.modeling import FGCLIP2Model

    s = SIZES[size]
    common = dict(hidden_size=s["hidden"], intermediate_size=s["mlp"], num_hidden_layers=s["layers"],
                  num_attention_heads=s["heads"], layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh")
    config = FGCLIP2Config(dict(common, vocab_size=s["vocab"], max_position_embeddings=64, projection_size=s["hidden"]),
                           dict(common, num_channels=3, patch_size=16, num_patches=256), keep_len=20, longtext_len=196)
    return FGCLIP2Model(config)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patches", type=int, default=1024, help="patches per image (a square grid)")
    parser.add_argument("--boxes", type=int, default=4, help="region boxes per image")
    parser.add_argument("--hard-boxes", type=int, default=2, help="boxes with hard negatives per image")
    parser.add_argument("--negatives", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--no-checkpointing", action="store_true", help="turn gradient checkpointing off")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    if int(args.patches ** 0.5) ** 2 != args.patches:
        return fail(f"--patches must be a square number (e.g. 1024), got {args.patches}")
    try:
        device = pick_device(args.device)
    except ValueError as err:
        return fail(str(err))

    from fgdense.train.model import FGCLIP2Stage2

    torch.manual_seed(0)
    model = FGCLIP2Stage2(network=build_network(args.size), gradient_checkpointing=not args.no_checkpointing).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = synthetic_batch(args.batch_size, args.patches, args.boxes, args.hard_boxes, args.negatives,
                            SIZES[args.size]["vocab"], device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step():
        with autocast:
            losses = model(**batch)
        loss = sum(v for k, v in losses.items() if k.startswith("loss"))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    elapsed = time.perf_counter() - start
    result = dict(size=args.size, batch_size=args.batch_size, patches=args.patches, dtype=args.dtype,
                  gradient_checkpointing=not args.no_checkpointing, device=str(device),
                  gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                  steps_per_s=round(args.steps / elapsed, 3), images_per_s=round(args.steps * args.batch_size / elapsed, 1),
                  peak_memory_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
                  last_loss=round(loss, 4))
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
