"""Stage-2 region fine-tuning of FG-CLIP 2 on mmengine (FineHARD and COCO / LVIS-format data).

Importing this package registers the dataset, batch sampler, collate function, model and hooks in
mmengine's registries, so configs name them by type.
"""

from mmengine.registry import DATA_SAMPLERS, DATASETS, FUNCTIONS, HOOKS, MODELS

from .coco import CocoFormatError, CocoRegionDataset
from .collate import FineHARDCollator, finehard_collate
from .data import FineHARDDataset, FineHARDError
from .records import Record
from .sampler import MonolingualBatchSampler
from .hooks import ExportHook, RankSummaryHook, SkippedImagesHook, export_checkpoint
from .losses import hard_negative_loss, region_contrastive_loss, siglip_loss, sync_threshold, text_intra_modal_loss
from .mixed import MixedDataset
from .model import FGCLIP2Stage2, enable_gradient_checkpointing
from .safe_resume import enable_safe_resume

for _dataset in (FineHARDDataset, CocoRegionDataset, MixedDataset):
    DATASETS.register_module(module=_dataset, force=True)
DATA_SAMPLERS.register_module(module=MonolingualBatchSampler, force=True)
FUNCTIONS.register_module(module=finehard_collate, force=True)
MODELS.register_module(module=FGCLIP2Stage2, force=True)
for _hook in (ExportHook, SkippedImagesHook, RankSummaryHook):
    HOOKS.register_module(module=_hook, force=True)
enable_safe_resume()

__all__ = [
    "FGCLIP2Stage2", "FineHARDCollator", "FineHARDDataset", "FineHARDError", "MonolingualBatchSampler", "Record",
    "CocoRegionDataset", "CocoFormatError", "MixedDataset",
    "finehard_collate", "ExportHook", "SkippedImagesHook", "RankSummaryHook", "export_checkpoint",
    "siglip_loss", "region_contrastive_loss", "text_intra_modal_loss", "hard_negative_loss", "sync_threshold",
    "enable_gradient_checkpointing",
]
