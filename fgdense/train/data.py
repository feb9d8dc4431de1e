"""FineHARD-format stage-2 data: records, up-front validation, a collator and a monolingual sampler.

A FineHARD annotation file is JSON (a list of records) or JSONL (one record a line); a folder means
every ``*.json`` / ``*.jsonl`` in it. A record::

    {"f_path": "000/123.jpg", "caption": "<long caption>", "short_caption": "<short caption>",
     "is_cn": false,
     "bbox_info": [{"bbox": [x1, y1, x2, y2],            # normalised to [0, 1], xyxy
                    "short_expr": "red mug", "long_expr": "a red mug on the desk",
                    "flag_short_neg": 1, "short_expr_negs": ["blue mug", ... 10 captions]}]}

``f_path`` is relative to the English or the Chinese image root (``is_cn``; when absent, a caption with
CJK characters counts as Chinese) and may not lead outside it (``..``, an absolute path).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import FineHARDError, ImageLoadError
from ..paths import path_inside
from ..processing.image import load_image
from ..processing.text import check_text_mask, tokenize

logger = logging.getLogger(__name__)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# Token ids of this many texts are remembered by a collator (a COCO-format run has few distinct texts).
TOKEN_CACHE_SIZE = 50000
# Normalised coordinates may overshoot [0, 1] by rounding; more than this is an annotation error.
_BOX_SLACK = 1e-3


@dataclass
class Record:
    """One training image with its texts: what every dataset type hands the collator."""

    image_path: Path
    caption: str
    short_caption: str
    is_cn: bool
    boxes: np.ndarray  # (N, 4) normalised xyxy, clipped to [0, 1]
    box_texts: list[str]  # one per box (long_expr by default)
    hard_boxes: np.ndarray  # (H, 4) the boxes that carry hard negatives
    hard_texts: list[list[str]] = field(default_factory=list)  # H lists of 1 + K captions, positive first
    # What a text names, for the objectives' positives: texts with equal keys name the same thing
    # (two boxes of one category worded by different templates). None: a text's key is the text.
    box_keys: list[str] | None = None
    hard_keys: list[list[str]] | None = None
    # Per box, its COCO segmentation (polygons or RLE, image pixels) or None; and the (width,
    # height) those pixels refer to. None: no masks.
    masks: list | None = None
    image_size: tuple[int, int] | None = None
    # The masks cover every object of the image (after crops and max_boxes): the rest is background.
    masks_complete: bool = False


def text_key(text: str) -> int:
    """A stable non-negative 56-bit integer for a string (equal on every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=7).digest(), "big")


def annotation_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The JSON/JSONL files named by ``paths`` (files, or folders scanned for *.json / *.jsonl)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
            if not found:
                raise FineHARDError(f"annotation folder {path} holds no .json or .jsonl files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FineHARDError(f"annotation file {path} does not exist")
    if not files:
        raise FineHARDError("no annotation files given")
    return files


def read_annotations(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, ValueError) as err:
        raise FineHARDError(f"cannot read annotation file {path}: {err}") from None
    if isinstance(data, dict):
        data = data.get("annotations", data.get("data"))
    if not isinstance(data, list):
        raise FineHARDError(f"{path} must hold a list of records (or JSONL, one record a line)")
    return data


def parse_record(raw, where: str, image_root: Path, image_root_cn: Path, num_negatives: int,
                 box_text: str, max_boxes: int | None) -> Record:
    """One validated :class:`Record`; any problem raises :class:`FineHARDError` naming ``where``."""
    if not isinstance(raw, dict):
        raise FineHARDError(f"{where}: a record must be a JSON object, got {type(raw).__name__}")
    for key in ("f_path", "caption", "short_caption"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise FineHARDError(f"{where}: missing or empty {key!r}")
    is_cn = bool(raw["is_cn"]) if "is_cn" in raw else bool(_CJK.search(raw["caption"] + raw["short_caption"]))
    infos = raw.get("bbox_info") or []
    if not isinstance(infos, list):
        raise FineHARDError(f"{where}: 'bbox_info' must be a list")
    boxes, texts, hard_boxes, hard_texts = [], [], [], []
    for j, info in enumerate(infos[:max_boxes] if max_boxes else infos):
        box = _check_box(info.get("bbox") if isinstance(info, dict) else None, f"{where} box {j}")
        text = info.get(box_text) or info.get("short_expr")
        if not isinstance(text, str) or not text:
            raise FineHARDError(f"{where} box {j}: missing {box_text!r} text")
        boxes.append(box)
        texts.append(text)
        if info.get("flag_short_neg"):
            negatives = info.get("short_expr_negs")
            positive = info.get("short_expr")
            if not isinstance(positive, str) or not positive:
                raise FineHARDError(f"{where} box {j}: flag_short_neg is set but 'short_expr' is missing")
            if not isinstance(negatives, list) or len(negatives) < num_negatives or \
                    not all(isinstance(n, str) and n for n in negatives[:num_negatives]):
                raise FineHARDError(f"{where} box {j}: flag_short_neg is set but 'short_expr_negs' does not hold "
                                    f"{num_negatives} non-empty captions")
            hard_boxes.append(box)
            hard_texts.append([positive] + negatives[:num_negatives])
    image_path = path_inside(image_root_cn if is_cn else image_root, raw["f_path"])
    if image_path is None:  # never opened: a record names images under its root only
        raise FineHARDError(f"{where}: 'f_path' {raw['f_path']!r} leads outside the image root")
    return Record(image_path, raw["caption"], raw["short_caption"], is_cn,
                  np.asarray(boxes, dtype=np.float32).reshape(-1, 4), texts,
                  np.asarray(hard_boxes, dtype=np.float32).reshape(-1, 4), hard_texts)


def _check_box(box, where: str) -> list[float]:
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise FineHARDError(f"{where}: 'bbox' must be 4 numbers [x1, y1, x2, y2] normalised to [0, 1], got {box!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise FineHARDError(f"{where}: 'bbox' has a non-numeric coordinate: {box!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise FineHARDError(f"{where}: 'bbox' has a non-finite coordinate: {box!r}")
    if min(x1, y1, x2, y2) < -_BOX_SLACK or max(x1, y1, x2, y2) > 1 + _BOX_SLACK:
        raise FineHARDError(f"{where}: 'bbox' {box!r} is not normalised to [0, 1]")
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    if x2 <= x1 or y2 <= y1:
        raise FineHARDError(f"{where}: 'bbox' {box!r} is inverted or has zero area")
    return [x1, y1, x2, y2]


class FineHARDDataset(Dataset):
    """FineHARD records, validated when built (with a progress bar), images loaded lazily.

    ``dataset[i]`` (or ``dataset[(i, epoch)]``, as :class:`MonolingualBatchSampler` yields) is a dict
    with the PIL ``image`` and the record; an image that is missing or unreadable gives
    ``{"skipped": path}`` instead, which the collator drops and counts.
    """

    def __init__(self, ann_file, image_root=".", image_root_cn=None, num_negatives: int = 10,
                 box_text: str = "long_expr", max_boxes: int | None = 8, progress: bool = True):
        self.num_negatives = num_negatives
        image_root = Path(image_root)
        image_root_cn = Path(image_root_cn) if image_root_cn is not None else image_root
        self.records: list[Record] = []
        files = annotation_files(ann_file)
        for path in files:
            raws = read_annotations(path)
            for index, raw in enumerate(tqdm(raws, desc=f"checking {path.name}", disable=not progress,
                                             unit="record", leave=False)):
                self.records.append(parse_record(raw, f"{path} record {index}", image_root, image_root_cn,
                                                 num_negatives, box_text, max_boxes))
        if not self.records:
            raise FineHARDError(f"no records in {', '.join(map(str, files))}")
        self.files = files
        # A wrong image root would otherwise skip every image and "train" on nothing.
        for language, root in (("Chinese", image_root_cn), ("English", image_root)):
            used = any(r.is_cn == (language == "Chinese") for r in self.records)
            if used and not root.is_dir():
                raise FineHARDError(f"image root for the {language} records {root} is not a folder")
        self.is_cn = np.array([r.is_cn for r in self.records], dtype=bool)
        # mmengine's Runner hands this to its visualizer.
        self.metainfo = {"dataset": "FineHARD", "records": len(self.records), "chinese": int(self.is_cn.sum())}

    def __len__(self) -> int:
        return len(self.records)

    def __deepcopy__(self, memo):
        # Read-only once built and checked: mmengine deep-copies the dataloader settings that hold it,
        # and a copy of every record would only cost memory.
        return self

    def summary(self) -> str:
        boxes = sum(len(r.boxes) for r in self.records)
        return (f"FineHARD {', '.join(map(str, self.files))}: {len(self.records)} records "
                f"({int(self.is_cn.sum())} Chinese), {boxes} boxes")

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, None)
        record = self.records[index]
        try:
            image = load_image(record.image_path)
        except ImageLoadError as err:
            return {"skipped": str(record.image_path), "reason": str(err), "epoch": epoch}
        return {"image": image, "record": record, "epoch": epoch}


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


def mask_on_grid(segmentation, image_size: tuple[int, int], grid_hw: tuple[int, int], supersample: int = 4) -> np.ndarray:
    """The fraction of each patch-grid cell (h, w) that a COCO segmentation covers.

    ``segmentation`` is COCO polygons (a list of flat ``[x1, y1, x2, y2, ...]`` lists) or RLE (a dict
    with ``counts`` and ``size``) in the pixels of an image of ``image_size`` (width, height); the
    processor resizes the whole image onto the grid, so coordinates scale linearly. Polygons are
    rasterised at ``supersample`` x the grid and averaged; RLE masks are decoded and area-resized.
    """
    import cv2
    from pycocotools import mask as mask_utils

    width, height = image_size
    grid_h, grid_w = grid_hw
    if isinstance(segmentation, list):
        fine_h, fine_w = grid_h * supersample, grid_w * supersample
        sx, sy = fine_w / width, fine_h / height
        polygons = [[v * (sx if k % 2 == 0 else sy) for k, v in enumerate(poly)] for poly in segmentation
                    if len(poly) >= 6]
        if not polygons:
            return np.zeros((grid_h, grid_w), np.float32)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, fine_h, fine_w))
        fine = mask_utils.decode(rle).astype(np.float32)
        return fine.reshape(grid_h, supersample, grid_w, supersample).mean(axis=(1, 3))
    rle = segmentation
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    full = mask_utils.decode(rle).astype(np.float32)
    return cv2.resize(full, (grid_w, grid_h), interpolation=cv2.INTER_AREA)


@lru_cache(maxsize=4)
def _collator(checkpoint: str, num_negatives: int, max_num_patches: int | None, text_mask: str) -> FineHARDCollator:
    from ..processing.image import FGCLIP2ImageProcessor
    from ..processing.text import load_tokenizer

    return FineHARDCollator(load_tokenizer(checkpoint), FGCLIP2ImageProcessor.from_pretrained(checkpoint),
                            num_negatives, max_num_patches, text_mask)


def finehard_collate(items: list[dict], checkpoint: str, num_negatives: int = 10,
                     max_num_patches: int | None = None, text_mask: str = "none") -> dict:
    """mmengine ``collate_fn``: the :class:`FineHARDCollator` of ``checkpoint``'s tokenizer and processor."""
    return _collator(str(checkpoint), num_negatives, max_num_patches, text_mask)(items)


class MonolingualBatchSampler:
    """Batches that hold only English or only Chinese records (the official bilingual grouping).

    Each epoch, each language's records are shuffled (seeded by seed + epoch) and cut into groups of
    ``batch_size x world_size``; the last group of a language is filled up by wrapping around its list,
    so no record is dropped. The groups are shuffled and process r takes the r-th batch of each group:
    at every step all processes see the same language and the same number of batches.
    Yields lists of ``(index, epoch)``.

    A dataset with ``pass_indices(epoch, seed)`` (:class:`~fgdense.train.mixed.MixedDataset`) decides
    which items (repeats allowed) make up each pass; the grouping is then the same.

    ``sampler`` is the mmengine sampler the Runner builds (``DefaultSampler``); only its dataset, seed,
    shuffle flag, rank, world size and epoch (set by the training loop) are used. With ``infinite``
    the sampler runs pass after pass by itself (for iteration-based training: mmengine's loop pauses
    two seconds each time a finite dataloader runs out).
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool = False, infinite: bool = False):
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.infinite = infinite
        self.dataset = sampler.dataset
        self.languages = self._languages(0)

    def _languages(self, epoch: int) -> list[np.ndarray]:
        """The English and the Chinese items of one pass (a weighted draw when the dataset mixes several)."""
        is_cn = np.asarray(self.dataset.is_cn, dtype=bool)
        if hasattr(self.dataset, "pass_indices"):
            indices = self.dataset.pass_indices(epoch, int(getattr(self.sampler, "seed", 0) or 0))
            return [indices[~is_cn[indices]], indices[is_cn[indices]]]
        return [np.flatnonzero(~is_cn), np.flatnonzero(is_cn)]

    def _groups(self, epoch: int) -> list[np.ndarray]:
        shuffle = bool(getattr(self.sampler, "shuffle", True))
        rng = np.random.default_rng((int(getattr(self.sampler, "seed", 0) or 0), epoch))
        world = int(getattr(self.sampler, "world_size", 1))
        size = self.batch_size * world
        groups = []
        for indices in self._languages(epoch):
            if len(indices) == 0:
                continue
            order = rng.permutation(indices) if shuffle else indices
            count = math.ceil(len(order) / size)
            order = np.resize(order, count * size)  # wraps around to fill the last group
            groups += list(order.reshape(count, world, self.batch_size))
        if shuffle:
            groups = [groups[i] for i in rng.permutation(len(groups))]
        return groups

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = int(getattr(self.sampler, "epoch", 0))
        rank = int(getattr(self.sampler, "rank", 0))
        while True:
            for group in self._groups(epoch):
                yield [(int(i), epoch) for i in group[rank]]
            if not self.infinite:
                return
            epoch += 1

    def __len__(self) -> int:
        size = self.batch_size * int(getattr(self.sampler, "world_size", 1))
        return sum(math.ceil(len(ix) / size) for ix in self.languages if len(ix))
