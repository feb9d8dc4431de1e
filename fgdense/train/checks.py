"""What a training run refuses before it writes anything: settings that cannot train, a work dir that
cannot (or must not) hold the run, and training data of which no image can be read.

Each refusal is one :class:`~fgdense.errors.FGDenseError` naming the setting, so ``train_stage2.py``
prints one line and exits non-zero instead of training on nothing or failing deep inside mmengine.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..bulk.workers import check_workers
from ..errors import DatasetError, FGDenseError, OutputError
from ..io.files import check_output_folder

MAX_BATCH_SIZE = 4096  # images per process and step; far beyond any GPU's memory at 128 patches each
MAX_LR = 1.0  # AdamW at a learning rate above 1 only diverges
PROBED_IMAGES = 8  # images of each dataset read before training: if none can be, there is nothing to train on


def _whole(value, name: str, low: int, high: int | None = None) -> int:
    valid = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not valid:
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise FGDenseError(f"{name} must be a whole number {bound}, got {value!r}")
    return value


def check_run_settings(cfg) -> None:
    """Refuse iteration counts, batch sizes and learning rates a run cannot train with."""
    loop = cfg.train_cfg
    for key in ("max_iters", "max_epochs"):
        if key in loop:
            _whole(loop[key], key, 1)
    _whole(cfg.get("warmup_iters", 0), "warmup_iters", 0)
    _whole(cfg.train_dataloader.get("batch_size"), "batch_size", 1, MAX_BATCH_SIZE)
    # DataLoader workers are processes: 100000 of them take the machine down before training starts.
    check_workers(_whole(cfg.train_dataloader.get("num_workers", 0), "num_workers", 0), "train_dataloader.num_workers")
    lr = cfg.optim_wrapper.optimizer.get("lr")
    valid = isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and 0 < lr <= MAX_LR
    if not valid:
        raise FGDenseError(f"lr must be a number above 0 and at most {MAX_LR:g}, got {lr!r}")


def check_work_dir(work_dir) -> Path:
    """The work dir if the run can write there: not a file, writable, and not a system folder (``/``, a
    folder directly under it such as ``/usr``, or the home folder), into which a run would scatter its
    checkpoints, logs and export."""
    path = Path(work_dir).expanduser()
    resolved = path.resolve()
    home = Path.home().resolve()
    if resolved.parent == resolved or resolved.parent == Path(resolved.anchor) or resolved in (home, *home.parents):
        raise OutputError(f"work_dir {work_dir} is a system folder (/, a folder directly under it, or the home "
                          "folder); name a folder of its own, e.g. work_dirs/my_run")
    return check_output_folder(path, "work_dir")


def _parts(dataset) -> list:
    """The dataset, or the parts of a MixedDataset."""
    return list(getattr(dataset, "datasets", None) or [dataset])


def check_images_readable(dataset, probes: int = PROBED_IMAGES) -> None:
    """Read up to ``probes`` items of each dataset, spread over it, as training reads them; refuse a
    dataset of which none can be read (a wrong or corrupt image root would train on nothing)."""
    for part in _parts(dataset):
        count = len(part)
        indices = sorted({round(i * (count - 1) / max(probes - 1, 1)) for i in range(min(probes, count))})
        reasons = []
        for index in indices:
            item = part[index]
            if "skipped" not in item:
                break
            reasons.append(item.get("reason") or item["skipped"])
        else:
            raise DatasetError(f"none of the {len(indices)} training images tried can be read (e.g. {reasons[0]}); "
                               "check image_root: there would be nothing to train on")
