"""Does fine-tuning make the model better? Before/after numbers on shapes-world variants, from a tiny random model.

    python benchmarks/benchmark_learning.py OUT_DIR [--variants default textured small] [--config
        configs/train/coco_tiny.py] [--train 300] [--val 100] [--cfg-options KEY=VALUE ...]

For every world variant (VARIANTS: the default world; textured backgrounds with other colours; small
objects on flat and textured backgrounds; each its own seed) it runs the project's own commands one
after the other in OUT_DIR/<variant>/ and writes OUT_DIR/<variant>/report.json, then OUT_DIR/report.json
with every variant and the mean, smallest and largest of each number over them:
  1. tools/make_tiny_checkpoint.py OUT_DIR/start             (defaults: a tiny random checkpoint, shared)
  2. tools/make_shapes_world.py <variant>/world --train N --val M and the variant's flags
  3. before, on the held-out images, each tool with its defaults:
     tools/eval_boxclass.py: trained categories (val/instances.json) and held-out colour-shape
       combinations among all categories (val/instances_novel.json);
     tools/eval_segmentation.py: mIoU over background and every category (val/masks, the VOC convention);
     tools/eval_grounding.py: each category name picks one of its boxes among the image's boxes;
     tools/segment.py: the pictures of one held-out image (the same image before and after)
  4. tools/train_stage2.py CONFIG --cfg-options checkpoint=... ann_file=... image_root=... work_dir=<variant>/work
  5. the same evaluations of <variant>/work/export, after.
Numbers are percentages. The training wall time and the machine's load are recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# World variants: (seed, tools/make_shapes_world.py flags). Seeds differ so no two share images.
VARIANTS = {
    "default": (0, []),
    "textured": (1, ["--backgrounds", "textured", "--colours", "purple", "orange", "cyan", "red"]),
    "small": (2, ["--sizes", "small", "--backgrounds", "flat", "textured"]),
}
MODES = ("pixels", "superpixels", "objects")  # segmentation's --regions, each measured besides the default
# The numbers summarised over the variants: (name, path into a variant's "after" / "before" scores).
HEADLINE = {"box_top1": ("trained_categories", "top1"), "novel_top1": ("held_out_combinations", "top1"),
            "miou": ("segmentation", "miou"), "background_iou": ("segmentation", "background_iou"),
            "grounding": ("grounding", "accuracy")}


def run(command: list[str], what: str) -> float:
    """Run one of the project's tools; stop with its last lines if it fails. Returns the wall time."""
    print(f"[benchmark] {what}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise SystemExit(f"error: {what} failed (exit {result.returncode}):\n{tail}")
    return time.perf_counter() - start


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def percent(fraction):
    return None if fraction is None else 100 * fraction


def default_mode() -> str:
    sys.path.insert(0, str(REPO))
    from fgdense.segment import SegmenterSettings

    return SegmenterSettings().regions


def segmentation(world: dict, folder: Path, common: list, extra: list, what: str) -> dict:
    """tools/eval_segmentation.py on the held-out label maps, background counted: mIoU, background IoU."""
    run(["tools/eval_segmentation.py", "--images", world["val_images"], "--masks", world["val_masks"],
         "--classes", world["classes"], "--background-class", "background", "--out", str(folder), "--plot",
         *extra, *common], what)
    report = json.loads((folder / "report.json").read_text())
    background = next(row for row in report["per_class"] if row["class"] == "background")
    return {"miou": 100 * report["miou"], "background_iou": 100 * (background["iou"] or 0.0),
            "pixel_accuracy": 100 * report["pixel_accuracy"], "images": report["images"],
            "threshold": report.get("threshold")}


def evaluate(model: Path, world: dict, out: Path, tag: str) -> dict:
    """Every evaluation of ``model`` on the held-out images, in percent; pictures of one image."""
    scores = {}
    common = ["--model", str(model), "--quiet"]
    for split, ann in (("trained_categories", world["val_ann"]), ("held_out_combinations", world["val_novel_ann"])):
        folder = out / f"boxclass_{tag}_{split}"
        run(["tools/eval_boxclass.py", "--ann", ann, "--images", world["val_images"], "--out", str(folder),
             "--workers", "0", "--plot", *common], f"box classification {tag}, {split}")
        report = json.loads((folder / "report.json").read_text())
        scores[split] = {"top1": 100 * report["top1"], "top5": 100 * report["top5"], "boxes": report["evaluated"],
                         "categories": report["categories"]}
    scores["segmentation"] = segmentation(world, out / f"segmentation_{tag}", common, [], f"segmentation {tag}")
    # After training, the other labelling modes against the default one (docs/segmentation.md).
    default = default_mode()
    scores["segmentation_modes"] = {default: scores["segmentation"]}
    for mode in [m for m in MODES if m != default and tag == "after"]:
        scores["segmentation_modes"][mode] = segmentation(world, out / f"segmentation_{tag}_{mode}", common,
                                                          ["--regions", mode], f"segmentation {tag}, {mode}")
    folder = out / f"grounding_{tag}"
    run(["tools/eval_grounding.py", "--ann", world["val_ann"], "--images", world["val_images"], "--out", str(folder),
         *common], f"grounding {tag}")
    report = json.loads((folder / "report.json").read_text())
    scores["grounding"] = {"accuracy": percent(report["accuracy"]), "chance": percent(report["chance"]),
                           "phrases": report["phrases"]}
    run(["tools/segment.py", world["picture"], "--labels", *world["names"], "--out", str(out / f"pictures_{tag}"),
         *common], f"pictures {tag}")
    return scores


def show(report: dict) -> None:
    """The before/after table, in percent."""
    before, after = report["before"], report["after"]
    rows = []
    for split, label in (("trained_categories", "box top-1, trained categories"),
                         ("held_out_combinations", "box top-1, held-out combinations")):
        rows.append((f"{label} ({after[split]['boxes']} boxes)", report["world"]["chance_top1"][split],
                     before[split]["top1"], after[split]["top1"]))
    seg = after["segmentation"]
    rows.append((f"segmentation mIoU ({seg['images']} images, background + {len(report['world']['names'])} classes)",
                 None, before["segmentation"]["miou"], seg["miou"]))
    rows.append(("  background IoU", None, before["segmentation"]["background_iou"], seg["background_iou"]))
    ground = after["grounding"]
    rows.append((f"grounding accuracy ({ground['phrases']} phrases)", ground["chance"],
                 before["grounding"]["accuracy"], ground["accuracy"]))
    print(f"{'held-out images':<58}{'chance':>8}{'before':>9}{'after':>9}")
    def cell(value, width):
        return f"{'-' if value is None else f'{value:.1f}':>{width}}"

    for name, chance, b, a in rows:
        print(f"{name:<58}{cell(chance, 8)}{cell(b, 9)}{cell(a, 9)}")


def run_variant(out: Path, start: Path, name: str, args) -> dict:
    """One world variant, before and after training: its report (also written to out/report.json)."""
    seed, flags = VARIANTS[name]
    out.mkdir(parents=True, exist_ok=True)
    world_dir = out / "world"
    run(["tools/make_shapes_world.py", str(world_dir), "--train", str(args.train), "--val", str(args.val),
         "--seed", str(seed), "--quiet", *flags], f"shapes world {name}")
    names = [line.strip() for line in (world_dir / "classes.txt").read_text(encoding="utf-8").splitlines()[1:]
             if line.strip()]
    world = {"val_ann": str(world_dir / "val" / "instances.json"),
             "val_novel_ann": str(world_dir / "val" / "instances_novel.json"),
             "val_images": str(world_dir / "val" / "images"), "val_masks": str(world_dir / "val" / "masks"),
             "classes": str(world_dir / "classes.txt"), "names": names,
             "picture": str(sorted((world_dir / "val" / "images").iterdir())[0])}
    before = evaluate(start, world, out, "before")
    work = out / "work"
    options = [f"checkpoint={start}", f"ann_file={world_dir / 'train' / 'instances.json'}",
               f"image_root={world_dir / 'train' / 'images'}", f"work_dir={work}", *args.cfg_options]
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    seconds = run(["tools/train_stage2.py", str(args.config), "--cfg-options", *options], f"training {name}")
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    after = evaluate(work / "export", world, out, "after")
    config = json.loads((work / "export" / "config.json").read_text())
    report = {
        "variant": name, "config": args.config, "cfg_options": args.cfg_options,
        "world": {"train_images": args.train, "val_images": args.val, "seed": seed, "flags": flags, "names": names,
                  "chance_top1": {split: 100 / after[split]["categories"]
                                  for split in ("trained_categories", "held_out_combinations")}},
        "training_seconds": round(seconds, 1), "load_average": {"before": load_before, "after": load_after},
        "background_threshold": config.get("background_threshold"),
        "before": before, "after": after,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"[{name}] training: {seconds / 60:.1f} min (load {load_before} -> {load_after})")
    show(report)
    return report


def summarise(reports: dict) -> dict:
    """Mean, smallest and largest of each headline number over the variants, before and after."""
    out = {}
    for when in ("before", "after"):
        for key, (part, field) in HEADLINE.items():
            values = [r[when][part][field] for r in reports.values() if r[when][part][field] is not None]
            if values:
                out[f"{when}_{key}"] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
    seconds = [r["training_seconds"] for r in reports.values()]
    out["training_seconds"] = {"mean": sum(seconds) / len(seconds), "min": min(seconds), "max": max(seconds)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder for the checkpoint, the worlds, the runs and report.json")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help=f"world variants to run (default all: {' '.join(VARIANTS)})")
    parser.add_argument("--config", default="configs/train/coco_tiny.py", help="training config (default coco_tiny)")
    parser.add_argument("--train", type=int, default=300, help="training images of each world (default 300)")
    parser.add_argument("--val", type=int, default=100, help="held-out images of each world (default 100)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="variants run side by side (default 1; with more, give each run one thread: "
                             "OMP_NUM_THREADS=1)")
    parser.add_argument("--cfg-options", nargs="*", default=[], help="more training overrides, KEY=VALUE")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 1
    out = Path(args.out_dir).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: {out} already exists and is not an empty folder; choose a new one", file=sys.stderr)
        return 1
    config = Path(args.config)
    if not (config if config.is_absolute() else REPO / config).is_file():
        print(f"error: config {args.config} does not exist", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    start = out / "start"
    run(["tools/make_tiny_checkpoint.py", str(start)], "tiny random checkpoint")
    with ThreadPoolExecutor(args.jobs) as pool:
        done = pool.map(lambda name: run_variant(out / name, start, name, args), args.variants)
        reports = dict(zip(args.variants, done))
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": cpu_model(),
                    "python": platform.python_version()},
        "summary": summarise(reports), "variants": reports,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    for key, value in report["summary"].items():
        print(f"{key:<24} mean {value['mean']:7.1f}   min {value['min']:7.1f}   max {value['max']:7.1f}")
    print(f"report written to {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
