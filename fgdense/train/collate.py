"""Batches of stage-2 training items: images with one patch budget per batch, texts tokenised per walk
type (ids remembered), boxes, hard negatives and masks padded; the mmengine ``collate_fn``."""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import torch

from ..processing.text import check_text_mask, tokenize
from .records import Record, text_key
from .segmentations import mask_on_grid

logger = logging.getLogger("fgdense.train.data")  # the logger these warnings have always had
# Token ids of this many texts are remembered by a collator (a COCO-format run has few distinct texts).
TOKEN_CACHE_SIZE = 50000


class FineHARDCollator:
    """Images with one dynamic patch budget per batch, texts tokenised per walk type, boxes padded.

    Output (B images kept, M = most boxes of any image, H = most hard-negative boxes):
    ``pixel_values``, ``pixel_attention_mask``, ``spatial_shapes``; ``long_ids`` (B, 196), ``short_ids``
    (B, 64); ``boxes`` (B, M, 4) normalised, ``box_ids`` (B, M, 64), ``box_counts`` (B,); ``hard_boxes``
    (B, H, 4), ``hard_ids`` (B, H, 1+K, 64), ``hard_counts`` (B,); ``skipped`` (number of unreadable
    images dropped) and ``epoch``. Keys (:func:`text_key` of what each text names; equal keys are the
    same thing): ``long_keys``, ``short_keys`` (B,), ``box_keys`` (B, M), ``hard_keys`` (B, H, 1+K).
    When some record has masks: ``box_masks`` (B, M, h, w), each box's mask area-averaged onto its
    image's patch grid (h, w = the largest grid of the batch; zero outside an image's own grid),
    ``box_has_mask`` (B, M) and ``background_known`` (B,): the image's masks cover all its objects.

    ``text_mask``: ``"none"`` (default) gives the text tower input ids only, as the official training
    does; ``"tokenizer"`` adds the attention masks the tokenizer returns (``long_mask``, ``short_mask``,
    ``box_mask``, ``hard_mask``, shaped as the ids), as the official evaluation and fgdense's tasks feed
    text: a model fine-tuned that way is evaluated on the text it was trained on. A tokenizer that returns
    no mask gives none either way.
    """

    def __init__(self, tokenizer, processor, num_negatives: int = 10, max_num_patches: int | None = None,
                 text_mask: str = "none"):
        self.tokenizer = tokenizer
        self.processor = processor
        self.num_negatives = num_negatives
        self.text_mask = check_text_mask(text_mask)
        # None: the official per-batch dynamic budget; a number: that fixed budget (e.g. benchmarks).
        self.max_num_patches = max_num_patches
        self._token_cache: dict = {}

    def __call__(self, items: list[dict]) -> dict:
        kept = [it for it in items if "image" in it]
        skipped = [it for it in items if "skipped" in it]
        for it in skipped:
            logger.warning("skipping unreadable image: %s", it["reason"])
        epochs = [it["epoch"] for it in items if it.get("epoch") is not None]
        batch: dict = {"skipped": len(skipped), "epoch": epochs[0] if epochs else None, "size": len(kept)}
        if not kept:
            return batch
        records = [it["record"] for it in kept]
        if self.max_num_patches is None:
            pixels = self.processor([it["image"] for it in kept], dynamic_max_patches=True)
        else:
            pixels = self.processor([it["image"] for it in kept], max_num_patches=self.max_num_patches,
                                    dynamic_max_patches=False)
        batch.update(pixel_values=pixels["pixel_values"], pixel_attention_mask=pixels["pixel_attention_mask"],
                     spatial_shapes=pixels["spatial_shapes"])
        for walk, texts in (("long", [r.caption for r in records]), ("short", [r.short_caption for r in records])):
            batch[f"{walk}_ids"], mask = self._tokens(texts, walk)
            if mask is not None:
                batch[f"{walk}_mask"] = mask
        batch["long_keys"] = torch.tensor([text_key(r.caption) for r in records], dtype=torch.long)
        batch["short_keys"] = torch.tensor([text_key(r.short_caption) for r in records], dtype=torch.long)
        batch["boxes"], box_ids, batch["box_counts"] = self._pad(
            [r.boxes for r in records], [[[t] for t in r.box_texts] for r in records], 1)
        batch["box_ids"] = box_ids[0][:, :, 0]
        if box_ids[1] is not None:
            batch["box_mask"] = box_ids[1][:, :, 0]
        batch["box_keys"] = self._keys([[[k] for k in (r.box_keys or r.box_texts)] for r in records],
                                       batch["box_counts"], 1)[:, :, 0]
        batch["hard_boxes"], (batch["hard_ids"], hard_mask), batch["hard_counts"] = self._pad(
            [r.hard_boxes for r in records], [r.hard_texts for r in records], 1 + self.num_negatives)
        if hard_mask is not None:
            batch["hard_mask"] = hard_mask
        batch["hard_keys"] = self._keys([r.hard_keys or r.hard_texts for r in records], batch["hard_counts"],
                                        1 + self.num_negatives)
        if any(r.masks is not None for r in records):
            batch["background_known"] = torch.tensor([r.masks_complete for r in records], dtype=torch.bool)
            batch["box_masks"], batch["box_has_mask"] = self._masks(records, batch["spatial_shapes"],
                                                                    batch["boxes"].shape[1])
        return batch

    @staticmethod
    def _keys(keys: list[list[list[str]]], counts: torch.Tensor, per_box: int) -> torch.Tensor:
        out = torch.full((len(keys), int(counts.max()) if len(counts) else 0, per_box), -1, dtype=torch.long)
        for i, per_image in enumerate(keys):
            for j, box_keys in enumerate(per_image):
                out[i, j] = torch.tensor([text_key(k) for k in box_keys], dtype=torch.long)
        return out

    @staticmethod
    def _masks(records: list[Record], spatial_shapes: torch.Tensor, most: int):
        grid_h, grid_w = (int(v) for v in spatial_shapes.max(0).values)
        masks = torch.zeros(len(records), most, grid_h, grid_w)
        has = torch.zeros(len(records), most, dtype=torch.bool)
        for i, record in enumerate(records):
            h, w = (int(v) for v in spatial_shapes[i])
            for j, segmentation in enumerate(record.masks or []):
                if segmentation is None:
                    continue
                grid = mask_on_grid(segmentation, record.image_size, (h, w))
                if grid.sum() > 0:
                    masks[i, j, :h, :w] = torch.from_numpy(grid)
                    has[i, j] = True
        return masks, has

    def _tokens(self, texts: list[str], walk: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, L) token ids and their (N, L) attention mask (None: ids only); texts seen before (category
        names, their negatives) are not tokenised again."""
        missing = list(dict.fromkeys(t for t in texts if (walk, t) not in self._token_cache))
        if missing:
            if len(self._token_cache) + len(missing) > TOKEN_CACHE_SIZE:
                self._token_cache.clear()
            inputs = tokenize(self.tokenizer, missing, walk, text_mask=self.text_mask)
            masks = inputs.get("attention_mask", [None] * len(missing))
            for text, ids, mask in zip(missing, inputs["input_ids"], masks):
                self._token_cache[(walk, text)] = (ids, mask)
        pairs = [self._token_cache[(walk, t)] for t in texts]
        ids = torch.stack([p[0] for p in pairs])
        return ids, (torch.stack([p[1] for p in pairs]) if pairs[0][1] is not None else None)

    def _pad(self, boxes: list[np.ndarray], texts: list[list[list[str]]], per_box: int):
        """(B, M, 4) boxes, ((B, M, per_box, 64) token ids, their attention mask or None) and (B,) counts,
        zero-padded."""
        counts = torch.tensor([len(b) for b in boxes], dtype=torch.long)
        most = int(counts.max()) if len(counts) else 0
        padded_boxes = torch.zeros(len(boxes), most, 4)
        ids = torch.zeros(len(boxes), most, per_box, 64, dtype=torch.long)
        masks = None
        flat = [t for per_image in texts for box_texts in per_image for t in box_texts]
        if flat:
            tokens, token_masks = self._tokens(flat, "box")
            tokens = tokens.reshape(-1, per_box, 64)
            if token_masks is not None:
                token_masks = token_masks.reshape(-1, per_box, 64)
                masks = torch.zeros_like(ids)
            start = 0
            for i, n in enumerate(counts.tolist()):
                padded_boxes[i, :n] = torch.from_numpy(boxes[i])
                ids[i, :n] = tokens[start : start + n]
                if masks is not None:
                    masks[i, :n] = token_masks[start : start + n]
                start += n
        return padded_boxes, (ids, masks), counts


@lru_cache(maxsize=4)
def _collator(checkpoint: str, num_negatives: int, max_num_patches: int | None, text_mask: str) -> FineHARDCollator:
    from ..processing.processor import FGCLIP2Processor

    companions = FGCLIP2Processor.from_pretrained(checkpoint)
    return FineHARDCollator(companions.tokenizer, companions.image_processor, num_negatives, max_num_patches,
                            text_mask)


def finehard_collate(items: list[dict], checkpoint: str, num_negatives: int = 10,
                     max_num_patches: int | None = None, text_mask: str = "none") -> dict:
    """mmengine ``collate_fn``: the :class:`FineHARDCollator` of ``checkpoint``'s tokenizer and processor."""
    return _collator(str(checkpoint), num_negatives, max_num_patches, text_mask)(items)
