"""COCO / LVIS-format detection data as stage-2 training samples.

A COCO instances file (``images``, ``annotations``, ``categories``; LVIS files too) plus an image folder
become :class:`~fgdense.train.data.Record` s like FineHARD's:

* each box's **region text** is its category's name (English, or Chinese from a names file), through
  a prompt template drawn per box (``"{}"`` by default: the bare name, as the BoxClass-CN evaluation
  and the tools' labels prompt; ``"imagenet"``: CLIP's 80 templates, which the COCO and LVIS
  evaluations average over; ``bare_prob`` mixes the two), sometimes a synonym instead of the name;
* each box's **hard negatives** are other categories' names in the same template, drawn at random or
  (``negatives="confused"``) half from the categories the starting model confuses most with it;
* the image's **captions** name its categories with their counts ("a photo showing 2 person, 1 dog");
* with ``masks``, each box carries its segmentation for the mask-pooled region objective.

Texts are drawn afresh for every pass over the data, from a generator seeded by (seed, item, pass),
so a resumed run sees what an uninterrupted one would.

Nothing is dropped silently: crowd, tiny and degenerate boxes, annotations with an unknown category or
image, malformed annotations, images named outside the image root (never opened), images missing on
disk and images left without a usable box are counted
(``dataset.report``) and logged when training starts. A file that is not COCO-format at all, or a
names file or template that cannot be used, stops the run with one line naming the problem.

The category names, names file and templates are read in :mod:`fgdense.train.coco_names`; the masks
are flipped, cropped and put on the patch grid in :mod:`fgdense.train.segmentations`.
"""

from __future__ import annotations

import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import CocoFormatError, ImageLoadError
from ..io.coco import image_file, read_coco
from ..jsontext import finite_number
from ..paths import path_inside
from ..processing.image import decode_as_stored
from .coco_names import check_templates, apply_names_file, read_categories
from .records import Record
from .segmentations import crop_segmentation, flip_segmentation

# Names this module has long been imported for (tests, users' scripts).
__all__ = ["SKIP_REASONS", "CocoFormatError", "CocoImage", "CocoRegionDataset", "crop_segmentation",
           "flip_segmentation"]

logger = logging.getLogger(__name__)
LANGUAGES = ("en", "zh")
# Why annotations (the first six) and images (the last three) were not trained on. An image whose
# file_name leads outside the image root (``..``, an absolute path) is never opened.
SKIP_REASONS = ("crowd", "tiny", "degenerate", "unknown_category", "unknown_image", "malformed",
                "outside_image_root", "missing_image", "no_usable_box")


@dataclass
class CocoImage:
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) normalised xyxy, clipped to [0, 1]
    categories: list  # N category ids
    segmentations: list  # N COCO segmentations (or None)
    # Every annotation of the image is one of the N and has a segmentation: what no mask covers is
    # background (dense supervision trains it as such only then).
    complete: bool = False


class CocoRegionDataset(Dataset):
    """Stage-2 samples from a COCO / LVIS instances file (see the module docstring).

    ``languages``: ``["en"]``, ``["zh"]`` or both (then every image is an English item and a Chinese
    item; batches stay monolingual). ``templates`` / ``templates_zh``: prompt templates, one drawn per
    box (``"imagenet"``: CLIP's 80, as the COCO and LVIS evaluations prompt); ``bare_prob``: how often a
    box's text is the bare name instead (the prompt of BoxClass-CN and of the tools' labels), so that
    one fine-tuned model answers both kinds of prompt. ``synonym_prob``: how often a box's text uses one
    of its category's synonyms instead of its name. ``num_negatives``: hard-negative names per box (0: none); ``negatives``: ``"random"`` or
    ``"confused"`` (needs ``checkpoint``: the starting model classifies up to ``confusion_images``
    training images' boxes, and half of each box's negatives come from the ``confusion_pool``
    categories it confuses most with the box's own). Boxes narrower or lower than ``min_box_size``
    pixels, or smaller than ``min_box_area`` square pixels, are "tiny". ``max_boxes`` boxes per image
    and pass (a fresh random choice each pass when there are more). ``masks``: keep segmentations
    for the mask-pooled objective (None: as the config's mask weight needs). ``hflip_prob`` /
    ``vflip_prob``: how often an image is mirrored left-right / upside down (boxes and masks with it);
    ``crop_prob``: how often a random window of ``crop_scale`` (fractions of the area) is cut out, keeping
    the boxes of which at least ``min_visible`` lies inside (clipped to it). All drawn per item and
    pass like the texts, from a generator seeded by (``seed``, item, pass); crops before flips.
    """

    def __init__(self, ann_file, image_root, names_file=None, languages: Sequence[str] = ("en",),
                 templates: Sequence[str] = ("{}",), templates_zh: Sequence[str] = ("{}",), bare_prob: float = 0.0,
                 synonym_prob: float = 0.0,
                 num_negatives: int = 10, negatives: str = "random", checkpoint=None, confusion_images: int = 256,
                 confusion_pool: int = 5, min_box_size: float = 4.0, min_box_area: float = 0.0,
                 max_boxes: int | None = 8, masks: bool | None = False, hflip_prob: float = 0.0,
                 vflip_prob: float = 0.0, crop_prob: float = 0.0, crop_scale: Sequence[float] = (0.5, 1.0),
                 min_visible: float = 0.6, seed: int = 0, progress: bool = True):
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root)
        self.languages = tuple(languages)
        bad = [lang for lang in self.languages if lang not in LANGUAGES]
        if not self.languages or bad:
            raise CocoFormatError(f"languages must be a non-empty list of {', '.join(LANGUAGES)}; got {list(languages)}")
        self.templates = {"en": check_templates(templates, "templates"),
                          "zh": check_templates(templates_zh, "templates_zh")}
        if negatives not in ("random", "confused"):
            raise CocoFormatError(f"negatives must be 'random' or 'confused', got {negatives!r}")
        if negatives == "confused" and checkpoint is None:
            raise CocoFormatError("negatives='confused' needs the starting checkpoint (checkpoint=...)")
        if num_negatives < 0:
            raise CocoFormatError(f"num_negatives must be >= 0, got {num_negatives}")
        for what, prob in (("bare_prob", bare_prob), ("synonym_prob", synonym_prob), ("hflip_prob", hflip_prob),
                           ("vflip_prob", vflip_prob),
                           ("crop_prob", crop_prob), ("min_visible", min_visible)):
            if not 0 <= prob <= 1:
                raise CocoFormatError(f"{what} must be between 0 and 1, got {prob}")
        crop_scale = tuple(float(v) for v in crop_scale)
        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise CocoFormatError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale}")
        self.crop_prob, self.crop_scale, self.min_visible = float(crop_prob), crop_scale, float(min_visible)
        self.flip_probs = (float(hflip_prob), float(vflip_prob))
        self.synonym_prob = float(synonym_prob)
        self.bare_prob = float(bare_prob)
        self.num_negatives = int(num_negatives)
        self.max_boxes = max_boxes
        self.with_masks = bool(masks)
        self.seed = int(seed)
        if not self.image_root.is_dir():
            raise CocoFormatError(f"image root {self.image_root} is not a folder")

        data = read_coco(self.ann_file)
        self.categories = read_categories(data, self.ann_file)
        self.counts: Counter = Counter()
        if names_file is not None:
            self.counts["names_file_unknown_ids"] = apply_names_file(self.categories, names_file)
        if "zh" in self.languages:
            without = sum(1 for c in self.categories.values() if not c.name_zh)
            if without == len(self.categories):
                raise CocoFormatError("languages includes 'zh' but no category has a Chinese name: give a names file "
                                      "with 'name_zh' (names_file=...)")
            self.counts["categories_without_chinese_name"] = without
        self.images = self._read_images(data, float(min_box_size), float(min_box_area), progress)
        if not self.images:
            raise CocoFormatError(f"{self.ann_file}: no image with a usable box under {self.image_root} "
                                  f"(skipped: {self._skip_summary()})")
        self.category_ids = list(self.categories)
        self.confused: dict = {}
        if negatives == "confused" and self.num_negatives:
            from .mining import confusion_ranking

            self.confused = {c: ranked[:confusion_pool] for c, ranked in
                             confusion_ranking(checkpoint, self, max_images=confusion_images, progress=progress).items()}
        self.is_cn = np.array([lang == "zh" for _ in self.images for lang in self.languages], dtype=bool)
        self.metainfo = {"dataset": "COCO-format", "ann_file": str(self.ann_file), "images": len(self.images),
                         "categories": len(self.categories), "languages": list(self.languages)}
        self.report = {"annotations_used": int(sum(len(im.categories) for im in self.images)),
                       "images_used": len(self.images),
                       "skipped": {r: int(self.counts.get(r, 0)) for r in SKIP_REASONS},
                       **{k: int(v) for k, v in self.counts.items() if k not in SKIP_REASONS}}
        if progress:
            print(self.summary(), file=sys.stderr)

    # ------------------------------------------------------------------ reading
    def _read_images(self, data: dict, min_size: float, min_area: float, progress: bool) -> list[CocoImage]:
        entries = {}
        for index, entry in enumerate(data["images"]):
            if not isinstance(entry, dict) or "id" not in entry:
                raise CocoFormatError(f"{self.ann_file}: image entry {index} has no 'id'")
            if not image_file(entry):
                raise CocoFormatError(f"{self.ann_file}: image {entry['id']!r} has neither 'file_name' nor 'coco_url'")
            entries[entry["id"]] = entry
        per_image: dict = {}
        annotated: Counter = Counter()  # annotations naming each image, used or not
        for ann in data["annotations"]:
            if isinstance(ann, dict) and ann.get("image_id") in entries:
                annotated[ann["image_id"]] += 1
            if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= set(ann):
                self.counts["malformed"] += 1
            elif ann["image_id"] not in entries:
                self.counts["unknown_image"] += 1
            elif ann["category_id"] not in self.categories:
                self.counts["unknown_category"] += 1
            elif ann.get("iscrowd"):
                self.counts["crowd"] += 1
            else:
                per_image.setdefault(ann["image_id"], []).append(ann)
        images = []
        for image_id, anns in tqdm(per_image.items(), desc=f"checking {self.ann_file.name}", disable=not progress,
                                   unit="image", leave=False):
            entry = entries[image_id]
            path = path_inside(self.image_root, image_file(entry))
            if path is None:
                self.counts["outside_image_root"] += 1
                continue
            if not path.is_file():
                self.counts["missing_image"] += 1
                continue
            width, height = entry.get("width"), entry.get("height")
            if not (isinstance(width, (int, float)) and isinstance(height, (int, float)) and width > 0 and height > 0):
                try:
                    with Image.open(path) as im:
                        width, height = im.size
                except (OSError, ValueError):
                    self.counts["missing_image"] += 1
                    continue
            boxes, cats, segs = [], [], []
            for ann in anns:
                box = self._box(ann.get("bbox"), float(width), float(height), min_size, min_area)
                if box is None:
                    continue
                boxes.append(box)
                cats.append(ann["category_id"])
                seg = ann.get("segmentation")
                segs.append(seg if self.with_masks and isinstance(seg, (list, dict)) and seg else None)
            if not boxes:
                self.counts["no_usable_box"] += 1
                continue
            complete = len(boxes) == annotated[image_id] and all(seg is not None for seg in segs)
            images.append(CocoImage(path, int(width), int(height), np.asarray(boxes, dtype=np.float32), cats, segs,
                                    complete))
        return images

    def _box(self, bbox, width: float, height: float, min_size: float, min_area: float):
        """Normalised xyxy of a COCO xywh box clipped to the image, or None (counted by reason)."""
        # A bool is not a coordinate (``true`` would read as 1); an integer too large for a float is no box.
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            self.counts["malformed"] += 1
            return None
        x, y, w, h = (finite_number(v) for v in bbox)
        if None in (x, y, w, h) or w <= 0 or h <= 0:
            self.counts["degenerate"] += 1
            return None
        x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
        if x2 <= x1 or y2 <= y1:  # entirely outside the image
            self.counts["degenerate"] += 1
            return None
        if x2 - x1 < min_size or y2 - y1 < min_size or (x2 - x1) * (y2 - y1) < min_area:
            self.counts["tiny"] += 1
            return None
        return [x1 / width, y1 / height, x2 / width, y2 / height]

    def _skip_summary(self) -> str:
        return ", ".join(f"{r} {self.counts[r]}" for r in SKIP_REASONS if self.counts.get(r)) or "nothing"

    def summary(self) -> str:
        """One line: what is trained on and what was skipped, by reason."""
        extra = [f"{k.replace('_', ' ')} {v}" for k, v in self.counts.items() if k not in SKIP_REASONS and v]
        return (f"{self.ann_file}: {self.report['annotations_used']} boxes of {len(self.images)} images, "
                f"{len(self.categories)} categories, languages {'+'.join(self.languages)}; skipped: "
                f"{self._skip_summary()}" + (f"; {', '.join(extra)}" if extra else ""))

    def __deepcopy__(self, memo):
        # Read-only once built and checked: mmengine deep-copies the dataloader settings that hold it,
        # and a copy of every record would only cost memory.
        return self

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self.images) * len(self.languages)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, None)
        image = self.images[index // len(self.languages)]
        try:
            pixels = decode_as_stored(image.path)  # boxes refer to the stored pixels: no EXIF rotation
        except ImageLoadError as err:
            return {"skipped": str(image.path), "reason": str(err), "epoch": epoch}
        if pixels.shape[:2] != (image.height, image.width):
            return {"skipped": str(image.path), "epoch": epoch,
                    "reason": f"{image.path} is {pixels.shape[1]}x{pixels.shape[0]} pixels but the annotation file "
                              f"says {image.width}x{image.height}"}
        record, view = self._sample(index, epoch)
        if view["crop"] is not None:
            x1, y1, x2, y2 = view["crop"]
            pixels = pixels[y1:y2, x1:x2]
        if view["flips"][0]:
            pixels = pixels[:, ::-1]
        if view["flips"][1]:
            pixels = pixels[::-1]
        return {"image": Image.fromarray(np.ascontiguousarray(pixels)), "record": record, "epoch": epoch}

    def record(self, index: int, epoch: int | None = None) -> Record:
        """The texts and boxes of item ``index`` for pass ``epoch`` (deterministic in both)."""
        return self._sample(index, epoch)[0]

    def _sample(self, index: int, epoch: int | None) -> tuple[Record, dict]:
        """The record and the view of its image: ``crop`` (x1, y1, x2, y2 pixels, or None) then ``flips``."""
        image = self.images[index // len(self.languages)]
        language = self.languages[index % len(self.languages)]
        rng = np.random.default_rng([self.seed, index, 0 if epoch is None else int(epoch)])
        boxes = image.boxes.copy()
        kept = np.arange(len(image.categories))
        crop, size = None, (image.width, image.height)
        if self.crop_prob and rng.random() < self.crop_prob:
            crop, boxes, kept = self._crop(image, rng)
            if crop is not None:
                size = (crop[2] - crop[0], crop[3] - crop[1])
        chosen = np.arange(len(kept))
        if self.max_boxes and len(chosen) > self.max_boxes:
            chosen = np.sort(rng.choice(len(chosen), self.max_boxes, replace=False))
        templates = self.templates[language]
        texts, keys, hard_texts, hard_keys = [], [], [], []
        for j in kept[chosen]:
            category = image.categories[j]
            name, synonyms = self.categories[category].words(language)
            template = templates[int(rng.integers(len(templates)))]
            if self.bare_prob and rng.random() < self.bare_prob:
                template = "{}"
            word = synonyms[int(rng.integers(len(synonyms)))] if synonyms and rng.random() < self.synonym_prob else name
            texts.append(template.format(word))
            keys.append(name.lower())
            if self.num_negatives:
                negatives = [self.categories[c].words(language)[0] for c in self._negatives(category, rng)]
                hard_texts.append([texts[-1]] + [template.format(n) for n in negatives])
                hard_keys.append([keys[-1]] + [n.lower() for n in negatives])
        caption, short = self.captions([image.categories[j] for j in kept], language)
        boxes = boxes[chosen]
        masks = None
        if self.with_masks:
            masks = [image.segmentations[j] for j in kept[chosen]]
            if crop is not None:
                masks = [crop_segmentation(m, (image.width, image.height), crop) for m in masks]
        flips = tuple(bool(rng.random() < p) if p > 0 else False for p in self.flip_probs)
        for axis, flipped in enumerate(flips):
            if flipped:  # axis 0: left-right (x), 1: upside down (y)
                boxes[:, [axis, axis + 2]] = 1 - boxes[:, [axis + 2, axis]]
                if masks is not None:
                    masks = [flip_segmentation(m, size, axis) for m in masks]
        record = Record(image.path, caption, short, language == "zh", boxes, texts,
                        boxes if self.num_negatives else np.zeros((0, 4), np.float32), hard_texts,
                        box_keys=keys, hard_keys=hard_keys if self.num_negatives else None,
                        masks=masks, image_size=size, masks_complete=bool(
                            masks is not None and image.complete and len(chosen) == len(image.categories)))
        return record, {"crop": crop, "flips": flips}

    def _crop(self, image: CocoImage, rng):
        """A random window of ``crop_scale`` of the image's area (its aspect ratio) that keeps at least
        one box ``min_visible`` visible: (window, boxes normalised to it, indices of the kept boxes), or
        (None, all boxes, all indices) when five tries find none."""
        width, height = image.width, image.height
        pixels = image.boxes * np.array([width, height, width, height], dtype=np.float32)
        areas = (pixels[:, 2] - pixels[:, 0]) * (pixels[:, 3] - pixels[:, 1])
        for _ in range(5):
            side = math.sqrt(rng.uniform(*self.crop_scale))
            cw, ch = max(1, int(round(width * side))), max(1, int(round(height * side)))
            x1, y1 = int(rng.integers(0, width - cw + 1)), int(rng.integers(0, height - ch + 1))
            clipped = np.clip(pixels, [x1, y1, x1, y1], [x1 + cw, y1 + ch, x1 + cw, y1 + ch])
            visible = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
            kept = np.flatnonzero(visible >= self.min_visible * areas)
            if len(kept):
                boxes = (clipped[kept] - [x1, y1, x1, y1]) / np.array([cw, ch, cw, ch], dtype=np.float32)
                return (x1, y1, x1 + cw, y1 + ch), boxes.astype(np.float32), kept
        return None, image.boxes.copy(), np.arange(len(image.categories))

    def _negatives(self, category, rng) -> list:
        """``num_negatives`` other categories: random, or half from the most confused ones."""
        others = [c for c in self.category_ids if c != category]
        if not others:
            raise CocoFormatError(f"{self.ann_file} has a single category: hard negatives need other categories "
                                  "(set num_negatives=0)")
        picked: list = []
        confused = [c for c in self.confused.get(category, []) if c != category]
        if confused:
            take = min(len(confused), math.ceil(self.num_negatives / 2))
            picked = [confused[i] for i in rng.choice(len(confused), take, replace=False)]
        rest = [c for c in others if c not in picked]
        need = self.num_negatives - len(picked)
        if rest and need > 0:
            # Without repeats while there are enough categories; with repeats otherwise.
            order = rng.permutation(len(rest))
            picked += [rest[order[i % len(rest)]] for i in range(need)]
        return picked

    def captions(self, categories: list, language: str) -> tuple[str, str]:
        """(long, short) captions naming the given (an image's) categories, most frequent first."""
        counts = Counter(self.categories[c].words(language)[0] for c in categories)
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if language == "zh":
            return "一张照片，上面有" + "、".join(f"{n}个{name}" for name, n in ordered), "、".join(n for n, _ in ordered)
        return "a photo showing " + ", ".join(f"{n} {name}" for name, n in ordered), ", ".join(n for n, _ in ordered)
