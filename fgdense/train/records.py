"""What every stage-2 dataset hands the collator: one training image with its texts (a :class:`Record`),
and the stable keys that say which texts name the same thing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
