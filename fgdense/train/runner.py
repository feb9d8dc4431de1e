"""Building and running a stage-2 training run from an mmengine config.

The configs (``configs/train/*.py``) keep the few settings users change most at the top level
(``checkpoint``, ``init_from``, ``data_root``, ``ann_file``, ``image_root``, ``image_root_cn``,
``names_file``, ``batch_size``, ``num_negatives``, ``text_mask``, ``max_iters``, ``warmup_iters``, ``lr``);
:func:`resolve_settings` fills the nested fields left ``None`` from them.
"""

from __future__ import annotations

import copy
import os
import warnings

import torch
from mmengine.config import Config
from mmengine.registry import DATASETS
from mmengine.runner import Runner

from ..bulk.distributed import join_cpu
from .checks import check_images_readable, check_run_settings
from .hooks import unwrap
from .resume import check_fits

# Top-level settings that fill the (top-level) dataset's fields of the same name, and the default
# under data_root of each (FineHARD layout).
DATASET_SETTINGS = {"ann_file": "annotations", "image_root": "images_en", "image_root_cn": "images_cn",
                    "names_file": None}


def resolve_settings(cfg: Config) -> Config:
    """Fill the config's ``None`` fields from its top-level settings (in place) and return it."""
    def fill(section, key, value):
        if section.get(key) is None:
            section[key] = value

    fill(cfg.model, "checkpoint", cfg.get("checkpoint"))
    fill(cfg.model, "init_from", cfg.get("init_from", "fgclip2"))
    if cfg.model.checkpoint is None:
        raise ValueError("the config names no checkpoint: set checkpoint=<FG-CLIP 2 or SigLIP 2 folder or hub id>")
    _check_model_settings(cfg.model)
    loader = cfg.train_dataloader
    fill(loader, "batch_size", cfg.get("batch_size"))
    fill(loader.collate_fn, "checkpoint", cfg.model.checkpoint)
    fill(loader.collate_fn, "num_negatives", cfg.get("num_negatives", 10))
    fill(loader.collate_fn, "text_mask", cfg.get("text_mask", "none"))
    _fill_dataset(cfg, loader.dataset, loader.collate_fn.num_negatives, top=True)
    fill(cfg.train_cfg, "max_iters", cfg.get("max_iters"))
    fill(cfg.optim_wrapper.optimizer, "lr", cfg.get("lr"))
    if cfg.get("param_scheduler") is None:
        warmup, total = int(cfg.get("warmup_iters", 0)), int(cfg.train_cfg.max_iters)
        cfg.param_scheduler = [
            dict(type="LinearLR", start_factor=cfg.get("warmup_start_factor", 1e-3), by_epoch=False, begin=0,
                 end=max(warmup, 1)),
            dict(type="CosineAnnealingLR", by_epoch=False, begin=max(warmup, 1), end=max(total, warmup + 1),
                 eta_min=0.0),
        ]
    if not torch.cuda.is_available():
        # CPU runs (smoke tests, gloo): no GPU ids for DDP, and fp32 (mmengine's AMP wrapper needs a GPU).
        if cfg.get("model_wrapper_cfg") is not None:
            cfg.model_wrapper_cfg["device_ids"] = None
        if cfg.optim_wrapper.get("type") == "AmpOptimWrapper":
            warnings.warn("no GPU: training in fp32 (OptimWrapper) instead of bf16 AMP", stacklevel=2)
            cfg.optim_wrapper.type = "OptimWrapper"
            cfg.optim_wrapper.pop("dtype", None)
            cfg.optim_wrapper.pop("loss_scale", None)
        cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
    check_run_settings(cfg)
    return cfg


def _fill_dataset(cfg: Config, dataset, num_negatives: int, top: bool) -> None:
    """Fill a dataset's (and a MixedDataset's parts') ``None`` fields that the top-level settings decide.

    Only fields the dataset's config names are filled (a COCO-format dataset has no ``image_root_cn``).
    The top-level ``ann_file`` / ``image_root`` / ... belong to the top-level dataset; the parts of a
    MixedDataset name their own. Every dataset gets the collator's ``num_negatives``, the model's
    checkpoint where it asks for one (hard negatives from the model's confusions) and, when its
    ``masks`` is None, masks exactly when an objective that reads them (``mask``, ``dense``,
    ``patch_region``) is on.
    """
    if dataset.get("type") == "MixedDataset":
        for part in dataset.get("datasets") or []:
            _fill_dataset(cfg, part, num_negatives, top=False)
        return
    if "num_negatives" in dataset:
        if dataset.num_negatives is None:
            dataset.num_negatives = num_negatives
        elif int(dataset.num_negatives) != int(num_negatives):
            raise ValueError(f"a dataset sets num_negatives={dataset.num_negatives} but batches hold {num_negatives} "
                             "per box: set the top-level num_negatives instead")
    if "checkpoint" in dataset and dataset.checkpoint is None:
        dataset.checkpoint = cfg.model.checkpoint
    if "masks" in dataset and dataset.masks is None:
        weights = cfg.model.get("loss_weights") or {}
        dataset.masks = any(bool(weights.get(name)) for name in ("mask", "dense", "patch_region", "sub_box"))
    if not top:
        return
    # data_root stands for the FineHARD layout (annotations/, images_en/, images_cn/) only.
    root = cfg.get("data_root") if dataset.get("type") == "FineHARDDataset" else None
    for key, default in DATASET_SETTINGS.items():
        if key in dataset and dataset[key] is None:
            dataset[key] = cfg.get(key) or (f"{root}/{default}" if root and default else None)
    for key in ("ann_file", "image_root"):
        if key in dataset and dataset[key] is None:
            hint = " (or data_root=<folder>)" if dataset.get("type") == "FineHARDDataset" else ""
            raise ValueError(f"the config names no {key}: set {key}=<path>{hint}")


# Top-level parts of FGCLIP2Model: a frozen prefix must start with one of them.
NETWORK_PARTS = ("vision_model", "text_model", "dense_feature_head", "longtext_head", "boxtext_head", "logit_scale",
                 "logit_bias")


def _check_model_settings(model_cfg) -> None:
    """Catch misspelt loss weights and frozen prefixes before the run writes anything."""
    from .model import DEFAULT_WEIGHTS

    unknown = sorted(set(model_cfg.get("loss_weights") or {}) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ValueError(f"unknown loss weights {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
    for prefix in model_cfg.get("frozen") or []:
        if str(prefix).split(".")[0] not in NETWORK_PARTS:
            raise ValueError(f"frozen prefix {prefix!r} matches no part of the model; parts: {', '.join(NETWORK_PARTS)}")


def build_train_dataset(cfg: Config):
    """The training dataset, validated now (every record and box checked, with a progress bar, and a few
    images read: a dataset of which none can be read is refused)."""
    import fgdense.train  # noqa: F401  (registers the dataset type)

    dataset_cfg = dict(cfg.train_dataloader.dataset)
    dataset_cfg.setdefault("progress", os.environ.get("RANK", "0") == "0")
    dataset = DATASETS.build(dataset_cfg)
    check_images_readable(dataset)
    return dataset


def init_distributed_cpu(launcher: str) -> None:
    """Start a gloo process group for a CPU-only ``torchrun`` run (mmengine would ask CUDA for a device)."""
    if launcher == "pytorch" and not torch.cuda.is_available():
        join_cpu()


# The Runner's constructor arguments that come from the config, as Runner.from_cfg passes them.
_RUNNER_ARGS = ("work_dir", "val_dataloader", "test_dataloader", "train_cfg", "val_cfg", "test_cfg", "auto_scale_lr",
                "optim_wrapper", "param_scheduler", "val_evaluator", "test_evaluator", "default_hooks", "custom_hooks",
                "data_preprocessor", "load_from", "visualizer", "experiment_name")


class Stage2Runner(Runner):
    """mmengine's Runner, resuming only from a checkpoint of this model, and never reading a config kept in
    a checkpoint (mmengine's own ``resume`` would run it as Python)."""

    def resume(self, filename, *args, **kwargs):
        check_fits(unwrap(self.model), filename)
        return super().resume(filename, *args, **kwargs)

    def load_checkpoint(self, filename, *args, **kwargs):
        checkpoint = super().load_checkpoint(filename, *args, **kwargs)
        if isinstance(checkpoint.get("meta"), dict):
            checkpoint["meta"].pop("config", None)
        return checkpoint


def build_runner(cfg: Config, dataset=None) -> Runner:
    """An mmengine Runner for ``cfg``; ``dataset`` (already validated) replaces the config's dataset.

    The Runner is built by its constructor, as ``Runner.from_cfg`` does, except that the training
    dataloader's ``dataset`` is the built dataset object (mmengine accepts a dataset there) while the
    config the Runner records keeps the dataset's settings.
    """
    init_distributed_cpu(cfg.get("launcher", "none"))
    if dataset is None:
        return Stage2Runner.from_cfg(cfg)
    cfg = copy.deepcopy(cfg)
    loader = dict(cfg.train_dataloader)
    loader["dataset"] = dataset
    return Stage2Runner(model=cfg["model"], train_dataloader=loader, **{k: cfg.get(k) for k in _RUNNER_ARGS},
                        resume=cfg.get("resume", False), launcher=cfg.get("launcher", "none"),
                        env_cfg=cfg.get("env_cfg", dict(dist_cfg=dict(backend="nccl"))),
                        log_processor=cfg.get("log_processor"), log_level=cfg.get("log_level", "INFO"),
                        default_scope=cfg.get("default_scope", "mmengine"),
                        randomness=cfg.get("randomness", dict(seed=None)), cfg=cfg)
