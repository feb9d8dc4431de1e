"""Does fine-tuning make the model better? Before/after numbers on the shapes world, from a tiny random model.

    python benchmarks/benchmark_learning.py OUT_DIR [--config configs/train/coco_tiny.py] [--train 300] [--val 300]
        [--seed 0] [--cfg-options KEY=VALUE ...]

Runs the project's own commands one after the other and writes OUT_DIR/report.json:
  1. tools/make_tiny_checkpoint.py OUT_DIR/start             (defaults: a tiny random checkpoint)
  2. tools/make_shapes_world.py OUT_DIR/world --train N --val M --seed S
  3. tools/eval_boxclass.py on the held-out images, before:  trained categories (val/instances.json)
     and held-out colour-shape combinations among all categories (val/instances_novel.json)
  4. tools/train_stage2.py CONFIG --cfg-options checkpoint=... ann_file=... image_root=... work_dir=OUT_DIR/work
  5. the same evaluations of OUT_DIR/work/export, after.
The training wall time and the machine's load are recorded with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(command: list[str], what: str) -> float:
    """Run one of the project's tools; stop with its last lines if it fails. Returns the wall time."""
    print(f"[benchmark] {what}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise SystemExit(f"error: {what} failed (exit {result.returncode}):\n{tail}")
    return time.perf_counter() - start


def evaluate(model: Path, world: dict, out: Path, tag: str) -> dict:
    scores = {}
    for split, ann in (("trained_categories", world["val_ann"]), ("held_out_combinations", world["val_novel_ann"])):
        folder = out / f"boxclass_{tag}_{split}"
        run(["tools/eval_boxclass.py", "--ann", ann, "--images", world["val_images"], "--model", str(model),
             "--out", str(folder), "--workers", "0", "--quiet"], f"box classification {tag}, {split}")
        report = json.loads((folder / "report.json").read_text())
        scores[split] = {"top1": report["top1"], "top5": report["top5"], "boxes": report["evaluated"],
                         "categories": report["categories"]}
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder for the checkpoint, the world, the run and report.json")
    parser.add_argument("--config", default="configs/train/coco_tiny.py", help="training config (default coco_tiny)")
    parser.add_argument("--train", type=int, default=300, help="training images of the world (default 300)")
    parser.add_argument("--val", type=int, default=300, help="held-out images of the world (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world (default 0)")
    parser.add_argument("--cfg-options", nargs="*", default=[], help="more training overrides, KEY=VALUE")
    args = parser.parse_args(argv)
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = Path(args.config)
    if not (config if config.is_absolute() else REPO / config).is_file():
        print(f"error: config {args.config} does not exist", file=sys.stderr)
        return 1

    start = out / "start"
    run(["tools/make_tiny_checkpoint.py", str(start)], "tiny random checkpoint")
    world_dir = out / "world"
    run(["tools/make_shapes_world.py", str(world_dir), "--train", str(args.train), "--val", str(args.val),
         "--seed", str(args.seed)], "shapes world")
    world = {"val_ann": str(world_dir / "val" / "instances.json"), "val_novel_ann": str(world_dir / "val" / "instances_novel.json"),
             "val_images": str(world_dir / "val" / "images")}
    before = evaluate(start, world, out, "before")
    work = out / "work"
    options = [f"checkpoint={start}", f"ann_file={world_dir / 'train' / 'instances.json'}",
               f"image_root={world_dir / 'train' / 'images'}", f"work_dir={work}", *args.cfg_options]
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    seconds = run(["tools/train_stage2.py", str(args.config), "--cfg-options", *options], "training")
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    after = evaluate(work / "export", world, out, "after")

    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "config": args.config, "cfg_options": args.cfg_options,
        "world": {"train_images": args.train, "val_images": args.val, "seed": args.seed,
                  "chance_top1": {split: 100 / after[split]["categories"] for split in after}},
        "training_seconds": round(seconds, 1), "load_average": {"before": load_before, "after": load_after},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "before": before, "after": after,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"training: {seconds / 60:.1f} min on {os.cpu_count()} CPUs (load {load_before} -> {load_after})")
    print(f"{'held-out boxes':<34}{'chance':>8}{'before top-1/5':>18}{'after top-1/5':>18}")
    for split, label in (("trained_categories", "trained categories"), ("held_out_combinations", "held-out combinations")):
        b, a = before[split], after[split]
        chance = report["world"]["chance_top1"][split]
        name = f"{label} ({a['boxes']})"
        print(f"{name:<34}{chance:>7.1f}%"
              f"{b['top1']:>10.1f} / {b['top5']:<5.1f}{a['top1']:>10.1f} / {a['top5']:<5.1f}")
    print(f"report written to {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
