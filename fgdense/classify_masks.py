"""Open-vocabulary labelling of given masks (SAM, any mask generator, a label image): one label per mask.

    >>> classifier = MaskClassifier.from_pretrained("qihoo360/fg-clip2-base")
    >>> result = classifier.classify("street.jpg", detections_with_masks, ["car", "公交车", "road"])
    >>> result.to_detections().data["class_name"]

A mask's embedding (``pooling``) is by default the region embedding of its box (RoIAlign, what box
classification uses; the mask then only says where the object is), or (``pooling="mask"``) the average
of the dense features under the mask itself: the mask area-resized onto the patch grid, each cell
weighed by the share of it the mask covers (the pooling the stage-2 ``mask`` objective trains). The box
measured better: on the shapes world's held-out masks, a fine-tuned tiny model labels 75.3 % of them
right by their boxes and 34.2 % by mask pooling (docs/quality.md), because a box's average holds the
object with the background around it, which is what the region objectives train. Scores over the
labels are cosines and, as for boxes, ``softmax(100 * cosine)``.

Masks come as ``supervision.Detections`` with ``mask`` (N, H, W) (what SAM and other generators give
through supervision), an (N, H, W) boolean array, or an (H, W) label image: every positive value is one
mask, 0 is no mask.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import supervision as sv
import torch
from tqdm import tqdm

from .classify import BoxClassifierSettings
from .dense import loaded, rgb_of
from .errors import FGDenseError
from .prompts import check_labels
from .regions import PROBABILITY_SCALE, LabelScores, cosine, labelled_detections, rounded
from .segment import mask_extent, mask_to_rle, mask_to_xyxy
from .task import Task


@dataclass
class MaskClassification(LabelScores):
    """Scores of one image's N masks over K labels: ``cosine`` and ``probabilities`` (N, K), ``top_k``
    (N, k) label indices, best first; ``masks`` (N, H, W) bool; ``source`` the Detections given (if any)."""

    labels: list[str]
    masks: np.ndarray
    cosine: np.ndarray
    probabilities: np.ndarray
    top_k: np.ndarray
    source: sv.Detections | None = dataclasses.field(default=None, repr=False)

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) xyxy boxes of the masks, as ``supervision.mask_to_xyxy`` gives them (first and last pixel)."""
        return np.stack([mask_to_xyxy(m) for m in self.masks]) if len(self.masks) else np.zeros((0, 4), np.float32)

    def to_detections(self) -> sv.Detections:
        """The masks with ``class_id`` = best label, ``confidence`` = its probability, ``data["class_name"]``;
        Detections given keep their fields (their own class fields move to ``data["detector_..."]``)."""
        if self.source is not None:
            return labelled_detections(self.source, None, *self.best())
        found = labelled_detections(None, self.boxes, *self.best())
        found.mask = self.masks
        return found

    def to_json(self) -> dict:
        boxes = self.boxes
        out = [{"xyxy": rounded(boxes[i]), "area": int(self.masks[i].sum()), **self.scores_json(i),
                "rle": mask_to_rle(self.masks[i])} for i in range(len(self.top_k))]
        return {"labels": list(self.labels), "masks": out}


def as_masks(masks, size: tuple[int, int], what: str = "masks") -> tuple[np.ndarray, sv.Detections | None]:
    """(N, H, W) bool masks of an image of ``size`` (height, width), and the Detections they came in."""
    source = None
    if isinstance(masks, sv.Detections):
        if masks.mask is None:
            raise FGDenseError(f"{what}: the Detections have no mask; give Detections with mask (N, H, W)")
        source, array = masks, np.asarray(masks.mask)
    else:
        array = np.asarray(masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else masks)
        if array.ndim == 2:  # a label image: each positive value one mask
            if not np.issubdtype(array.dtype, np.integer):
                raise FGDenseError(f"{what}: a label image must hold whole numbers (0 = no mask), got {array.dtype}")
            array = array[None] == np.unique(array[array > 0])[:, None, None]
    if array.ndim != 3 or tuple(array.shape[1:]) != tuple(size):
        raise FGDenseError(f"{what}: need (N, {size[0]}, {size[1]}) masks or a ({size[0]}, {size[1]}) label image "
                           f"for this {size[1]}x{size[0]} image; got shape {tuple(array.shape)}")
    array = array.astype(bool)
    empty = np.flatnonzero(~array.any(axis=(1, 2)))  # (a label image of background only gives no masks)
    if len(empty):
        raise FGDenseError(f"{what}: mask {int(empty[0])} is empty (no pixel set)")
    return array, source


POOLINGS = ("box", "mask")


@dataclasses.dataclass(frozen=True)
class MaskClassifierSettings(BoxClassifierSettings):
    """:class:`~fgdense.classify.BoxClassifierSettings` (``top_k``; the patch budget defaults to the
    checkpoint's own processing) plus ``pooling``: ``"box"`` (the mask's box, RoIAlign) or ``"mask"``."""

    pooling: str = "box"

    def __post_init__(self):
        super().__post_init__()
        if self.pooling not in POOLINGS:
            raise FGDenseError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")


class MaskClassifier(Task):
    """Label given masks by FG-CLIP 2 embeddings pooled from their boxes or under them (module docstring)."""

    Settings = MaskClassifierSettings

    def classify(self, image, masks, labels: Sequence[str], **overrides) -> MaskClassification:
        """Label one image's masks (Detections with ``mask``, (N, H, W) bool or an (H, W) label image)."""
        return self.classify_batch([image], [masks], labels, **overrides)[0]

    def classify_batch(self, images: Sequence, masks: Sequence, labels: Sequence[str], *, progress: bool = False,
                       **overrides) -> list[MaskClassification]:
        """:meth:`classify` for many images (one mask set each), ``batch_size`` images a backbone pass;
        ``progress`` shows a bar over the images."""
        settings = self.configured(**overrides)
        labels = check_labels(labels)
        if isinstance(images, (str, bytes)) or len(images) != len(masks):
            raise FGDenseError(f"need one mask set per image: {len(images)} images, {len(masks)} mask sets")
        inputs = [loaded(image) for image in images]
        checked = [as_masks(m, (rgb_of(im).height, rgb_of(im).width),
                            "masks" if len(inputs) == 1 else f"image {i} masks")
                   for i, (im, m) in enumerate(zip(inputs, masks))]
        text = self.label_embeddings(labels, settings)
        k = min(settings.top_k, len(labels))
        results = []
        starts = range(0, len(inputs), settings.batch_size)
        bar = tqdm(total=len(inputs), unit="image", desc="classifying masks",
                   disable=not progress or len(starts) <= 1)
        for start in starts:
            chunk = range(start, min(start + settings.batch_size, len(inputs)))
            for i, feats in zip(chunk, self.image_features([inputs[i] for i in chunk], settings)):
                array, source = checked[i]
                regions = self._pooled(feats, array, settings) if len(array) else torch.zeros(0, text.shape[1])
                scores = cosine(regions, text)
                probabilities = torch.softmax(PROBABILITY_SCALE * scores, dim=-1)
                top = probabilities.topk(k, dim=-1).indices
                results.append(MaskClassification(list(labels), array, scores.numpy(), probabilities.numpy(),
                                                  top.numpy(), source))
            bar.update(len(chunk))
        bar.close()
        return results

    @staticmethod
    def _pooled(feats, masks: np.ndarray, settings) -> torch.Tensor:
        if settings.pooling == "mask":
            return feats.mask_embeddings(masks)
        return feats.region_embeddings(np.stack([mask_extent(m) for m in masks]))


__all__ = ["MaskClassification", "MaskClassifier", "MaskClassifierSettings", "POOLINGS", "as_masks"]
