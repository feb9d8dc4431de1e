"""mmengine hooks of stage-2 training: checkpoint export, skipped-image reports, per-process summaries."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from mmengine.dist import all_reduce, get_rank, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..errors import DatasetError


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


def export_checkpoint(stage2_model, folder, checkpoint: str, finish=None) -> Path:
    """Write an fgdense checkpoint folder (config, safetensors, tokenizer, preprocessor) atomically.

    The folder is written next to its destination under a temporary name and renamed into place, so
    an interrupted export never leaves a half-written checkpoint. ``checkpoint`` is where the
    tokenizer and preprocessor come from (the checkpoint training started from). ``finish(tmp)``, if
    given, runs on the written folder before it is renamed into place (e.g. to add a calibration).
    """
    from ..model.weights import save_checkpoint
    from ..processing.processor import FGCLIP2Processor

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        companions = FGCLIP2Processor.from_pretrained(checkpoint)
        save_checkpoint(stage2_model.model, tmp, companions.tokenizer, companions.image_processor)
        if finish is not None:
            finish(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class ExportHook(Hook):
    """Export the trained network as an fgdense checkpoint folder loadable by ``FGCLIP2Model.from_pretrained``.

    Writes ``<work_dir>/<name>`` (default ``export``) when training ends and, with ``interval`` > 0,
    ``<work_dir>/<name>_iter_<n>`` every ``interval`` iterations. Only the main process writes.

    With ``calibrate`` (default) and COCO-format training data whose masks cover every object of some
    images, the export carries a background threshold calibrated on up to ``calibration_images`` of them
    (:mod:`fgdense.train.calibration`); otherwise none, and segmentation keeps the sigmoid match point.
    """

    priority = "LOW"

    def __init__(self, name: str = "export", interval: int = 0, calibrate: bool = True, calibration_images: int = 100):
        self.name = name
        self.interval = int(interval)
        self.calibrate = bool(calibrate)
        self.calibration_images = int(calibration_images)

    def _export(self, runner, folder_name: str) -> None:
        if is_main_process():
            model = unwrap(runner.model)
            folder = export_checkpoint(model, Path(runner.work_dir) / folder_name, runner.cfg.model.checkpoint,
                                       finish=lambda tmp: self._calibrate(runner, tmp))
            runner.logger.info(f"exported fgdense checkpoint to {folder}")

    def _calibrate(self, runner, folder: Path) -> None:
        """Add the calibrated background threshold to the written folder's config.json (if there are masks)."""
        masked = [d for d in _datasets(runner.train_dataloader.dataset) if getattr(d, "with_masks", False)]
        found = None
        if self.calibrate and masked:
            from ..processing.processor import FGCLIP2Processor
            from ..segment import Segmenter
            from .calibration import calibrate_background

            network = unwrap(runner.model).model
            was_training = network.training
            segmenter = Segmenter(network.eval(), FGCLIP2Processor.from_pretrained(folder))
            try:
                with torch.no_grad():
                    found = calibrate_background(segmenter, masked[0], self.calibration_images)
            finally:
                network.train(was_training)
        # A threshold inherited from the starting checkpoint was measured on other weights: never kept.
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config.pop("background_threshold", None)
        if found is not None:
            config["background_threshold"] = found["background_threshold"]
            runner.logger.info(f"background threshold calibrated on the training masks: {found}")
        (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.interval > 0 and self.every_n_train_iters(runner, self.interval) and runner.iter + 1 < runner.max_iters:
            self._export(runner, f"{self.name}_iter_{runner.iter + 1}")

    def after_train(self, runner) -> None:
        self._export(runner, self.name)


def _datasets(dataset) -> list:
    """The dataset, or the parts of a MixedDataset."""
    return list(getattr(dataset, "datasets", None) or [dataset])


class SkippedImagesHook(Hook):
    """Log what the training data holds and skipped when it was read (once, at the start), and how many
    unreadable images were skipped in each pass over the data (summed over processes); stop the run
    when a pass had no readable image at all (every step trained on nothing)."""

    priority = "BELOW_NORMAL"

    def __init__(self):
        self._reported: set[int] = set()

    def before_train(self, runner) -> None:
        dataset = runner.train_dataloader.dataset
        if hasattr(dataset, "summary"):
            for line in dataset.summary().splitlines():
                runner.logger.info(f"training data: {line}")

    def _report(self, runner, epochs) -> None:
        model = unwrap(runner.model)
        for epoch in sorted(epochs):
            counts = torch.tensor([float(model.skipped_per_epoch.get(epoch, 0)),
                                   float(model.used_per_epoch.get(epoch, 0))])
            all_reduce(counts)
            skipped, used = int(counts[0]), int(counts[1])
            runner.logger.info(f"data pass {epoch}: skipped {skipped} missing or unreadable image(s)")
            self._reported.add(epoch)
            if skipped and not used:
                # Summed over every process, so all of them stop here, each with this one line.
                raise DatasetError(f"data pass {epoch}: all {skipped} images read were missing or unreadable, "
                                   "nothing was trained on; check image_root")

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        epoch = data_batch.get("epoch") if isinstance(data_batch, dict) else None
        if epoch is not None:
            # A batch of pass e means every earlier pass is complete: report those once.
            self._report(runner, [e for e in range(int(epoch)) if e not in self._reported])

    def after_train(self, runner) -> None:
        model = unwrap(runner.model)
        seen = set(model.skipped_per_epoch)
        # Every process must join the same collectives: agree on the last pass seen.
        last = torch.tensor(float(max(seen) if seen else -1))
        all_reduce(last, op="max")
        self._report(runner, [e for e in range(int(last) + 1) if e not in self._reported])


class RankSummaryHook(Hook):
    """Write ``<work_dir>/<name>/rank<r>.json`` per process at the end: iterations, threshold, batch stats.

    For checking multi-process runs (each process's hard-negative threshold must be identical).
    """

    def __init__(self, name: str = "rank_summary"):
        self.name = name

    def after_train(self, runner) -> None:
        model = unwrap(runner.model)
        folder = Path(runner.work_dir) / self.name
        folder.mkdir(parents=True, exist_ok=True)
        summary = {"rank": get_rank(), "iter": runner.iter, "hard_threshold": float(model.hard_threshold),
                   **model.last_stats}
        path = folder / f"rank{get_rank()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, path)
