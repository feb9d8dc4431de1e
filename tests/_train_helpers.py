"""Shared set-up of the stage-2 training tests: a tiny checkpoint, a generated dataset, configs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "train" / "tiny.py"
COCO_TINY_CONFIG = REPO / "configs" / "train" / "coco_tiny.py"
# Small enough for a shared 2-core machine: 1 layer, 32 wide, 4 images and at most 2 boxes per image.
TEST_SETTINGS = dict(batch_size=4, lr=2e-3, warmup_iters=4)


def make_world(root: Path, num_train: int = 24, num_val: int = 0, seed: int = 0, **changes) -> dict:
    """A small shapes world (every training image has an English and a Chinese FineHARD record)."""
    from fgdense.train.shapes_world import make_shapes_world

    return make_shapes_world(root, num_train=num_train, num_val=num_val, seed=seed, **changes)


def make_setup(root: Path, num_train: int = 24, layers: int = 1) -> tuple[Path, dict]:
    """A tiny checkpoint and the FineHARD part of a small shapes world (``ann_file``, ``image_root``, ...)."""
    from fgdense.tiny import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(root / "ckpt", seed=0, hidden=32, layers=layers, heads=2)
    return checkpoint, make_world(root / "data", num_train=num_train)["finehard"]


def make_config(checkpoint, data: dict, work_dir, max_iters: int, **options):
    """The tiny config pointed at the generated data, as tools/train_stage2.py would resolve it."""
    from mmengine.config import Config

    from fgdense.train.runner import resolve_settings

    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.merge_from_dict(dict(TEST_SETTINGS, checkpoint=str(checkpoint), max_iters=max_iters,
                             ann_file=data["ann_file"], image_root=data["image_root"],
                             image_root_cn=data["image_root_cn"], **options))
    cfg.train_dataloader.dataset.max_boxes = 2
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(work_dir)
    cfg.launcher = "none"
    # mmengine keeps loggers by experiment name: give every run its own.
    cfg.experiment_name = f"test_{uuid.uuid4().hex[:8]}"
    return resolve_settings(cfg)


def make_coco_config(checkpoint, world: dict, work_dir, max_iters: int, **options):
    """configs/train/coco_tiny.py on a shapes world's COCO training file, as tools/train_stage2.py resolves it."""
    from mmengine.config import Config

    from fgdense.train.runner import resolve_settings

    cfg = Config.fromfile(str(COCO_TINY_CONFIG))
    cfg.merge_from_dict(dict(checkpoint=str(checkpoint), max_iters=max_iters, ann_file=world["train_ann"],
                             image_root=world["train_images"], **options))
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.work_dir = str(work_dir)
    cfg.launcher = "none"
    cfg.experiment_name = f"test_{uuid.uuid4().hex[:8]}"
    return resolve_settings(cfg)


def train(cfg):
    import torch

    from fgdense.train.runner import build_runner, build_train_dataset

    # Tiny matrices: one thread is several times faster than two on a busy shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner = build_runner(cfg, build_train_dataset(cfg))
        runner.train()
    finally:
        torch.set_num_threads(threads)
    return runner


def logged_scalars(work_dir) -> list[dict]:
    files = sorted(Path(work_dir).glob("*/vis_data/scalars.json"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def run_tool(args):
    """tools/train_stage2.py's main in this process: (exit code, what it wrote to stderr)."""
    import contextlib
    import io
    import runpy

    main = runpy.run_path(str(REPO / "tools" / "train_stage2.py"))["main"]
    # A buffer that stays open: mmengine's global logger may keep writing to the stream it first saw.
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()
