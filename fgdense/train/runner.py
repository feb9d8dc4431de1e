"""Building and running a stage-2 training run from an mmengine config.

The configs (``configs/train/*.py``) keep the few settings users change most at the top level
(``checkpoint``, ``init_from``, ``data_root``, ``ann_file``, ``image_root``, ``image_root_cn``,
``batch_size``, ``num_negatives``, ``max_iters``, ``warmup_iters``, ``lr``);
:func:`resolve_settings` fills the nested fields left ``None`` from them.
"""

from __future__ import annotations

import os
import warnings

import torch
from mmengine.config import Config
from mmengine.registry import DATASETS
from mmengine.runner import Runner


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
    fill(loader.dataset, "num_negatives", cfg.get("num_negatives", 10))
    root = cfg.get("data_root")
    for key, default in (("ann_file", "annotations"), ("image_root", "images_en"), ("image_root_cn", "images_cn")):
        value = cfg.get(key) or (f"{root}/{default}" if root else None)
        fill(loader.dataset, key, value)
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
    return cfg


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
    """The training dataset, validated now (every record and box checked, with a progress bar)."""
    import fgdense.train  # noqa: F401  (registers the dataset type)

    dataset_cfg = dict(cfg.train_dataloader.dataset)
    dataset_cfg.setdefault("progress", os.environ.get("RANK", "0") == "0")
    return DATASETS.build(dataset_cfg)


def init_distributed_cpu(launcher: str) -> None:
    """Start a gloo process group for a CPU-only ``torchrun`` run (mmengine would ask CUDA for a device)."""
    if launcher == "pytorch" and not torch.cuda.is_available() and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="gloo")


def build_runner(cfg: Config, dataset=None) -> Runner:
    """An mmengine Runner for ``cfg``; ``dataset`` (already validated) replaces the config's dataset."""
    init_distributed_cpu(cfg.get("launcher", "none"))
    runner = Runner.from_cfg(cfg)
    if dataset is not None:
        # The Runner builds its dataloader lazily from this dict; hand it the validated dataset.
        runner._train_dataloader["dataset"] = dataset
    return runner

