"""What box classification and grounding share: boxes in, one backbone pass per image, RoIAlign regions out.

A box's embedding is FG-CLIP 2's region feature: RoIAlign 1x1 of the image's dense features at the box
(see :meth:`fgdense.dense.DenseFeatures.region_embeddings`). Every box of an image is pooled from ONE
backbone pass over that image; the official evaluation re-encodes the whole image for each box, with the
same numbers (tested) at a fraction of the speed.

Boxes are xyxy in pixels of the image as :func:`fgdense.load_image` reads it (EXIF orientation applied),
given as an (N, 4) array-like or a ``supervision.Detections``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import supervision as sv
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import BoxError
from .model.boxes import validate_boxes
from .dense import loaded, rgb_of
from .task import Task

PROBABILITY_SCALE = 100.0  # the official probabilities are softmax(100 * cosine)


def as_boxes(boxes) -> tuple[np.ndarray, sv.Detections | None]:
    """(N, 4) float64 xyxy array of ``boxes`` (array-like or ``supervision.Detections``), and the Detections."""
    if isinstance(boxes, sv.Detections):
        return np.asarray(boxes.xyxy, dtype=np.float64).reshape(-1, 4), boxes
    if boxes is None:
        raise BoxError("boxes is None: give an (N, 4) xyxy array (possibly empty) or a supervision.Detections")
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (ValueError, TypeError):
        raise BoxError("boxes must be an (N, 4) array of x1, y1, x2, y2 pixels; got ragged or non-numbers") from None
    if array.size == 0:
        return np.zeros((0, 4)), None
    if array.ndim != 2 or array.shape[1] != 4:
        raise BoxError(f"boxes must be an (N, 4) array of x1, y1, x2, y2 pixels; got shape {tuple(array.shape)}")
    return array, None


def check_box_lists(images: Sequence, boxes: Sequence, what: str = "box list") -> None:
    """One box list per image, or a clear error."""
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise BoxError(f"expected a list of images, got {type(images).__name__}")
    if isinstance(boxes, sv.Detections) or not isinstance(boxes, Sequence) or len(images) != len(boxes):
        got = len(boxes) if isinstance(boxes, Sequence) and not isinstance(boxes, sv.Detections) \
            else f"a {type(boxes).__name__}"
        raise BoxError(f"need one {what} per image: {len(images)} images but {got} {what}s")


def labelled_detections(source: sv.Detections | None, xyxy, class_id, confidence, class_name) -> sv.Detections:
    """``source`` (or new Detections of ``xyxy``) with class_id, confidence and data["class_name"] set.

    The source's own class_id / confidence / class_name are kept as data["detector_..."].
    """
    class_id = np.asarray(class_id, dtype=int).reshape(-1)
    confidence = np.asarray(confidence, dtype=np.float32).reshape(-1)
    names = np.asarray(list(class_name), dtype=object).reshape(-1)
    if source is None:
        return sv.Detections(xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4), class_id=class_id,
                             confidence=confidence, data={"class_name": names})
    data = dict(source.data)
    if source.class_id is not None:
        data["detector_class_id"] = np.asarray(source.class_id)
    if source.confidence is not None:
        data["detector_confidence"] = np.asarray(source.confidence)
    if "class_name" in source.data:
        data["detector_class_name"] = np.asarray(source.data["class_name"])
    data["class_name"] = names
    return sv.Detections(xyxy=source.xyxy, mask=source.mask, class_id=class_id, confidence=confidence,
                         tracker_id=source.tracker_id, data=data, metadata=dict(source.metadata))


def rounded(values, digits: int = 2) -> list[float]:
    return [round(float(v), digits) for v in values]


class LabelScores:
    """What box and mask results share: N regions scored over ``labels``, with ``cosine`` and
    ``probabilities`` (N, K) and ``top_k`` (N, k) label indices, best first."""

    labels: list[str]
    cosine: np.ndarray
    probabilities: np.ndarray
    top_k: np.ndarray

    @property
    def top_labels(self) -> list[list[str]]:
        return [[self.labels[j] for j in row] for row in self.top_k.tolist()]

    def best(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Each region's best label: (index, probability, name)."""
        best = self.top_k[:, 0] if len(self.top_k) else np.zeros(0, int)
        return best, self.probabilities[np.arange(len(best)), best], [self.labels[j] for j in best.tolist()]

    def scores_json(self, i: int) -> dict:
        """Region ``i``'s best label and its top k, each with probability and cosine (JSON-ready)."""
        def entry(j: int) -> dict:
            return {"label": self.labels[j], "probability": round(float(self.probabilities[i, j]), 6),
                    "cosine": round(float(self.cosine[i, j]), 6)}

        row = self.top_k[i].tolist()
        return {**entry(row[0]), "top_k": [entry(j) for j in row]}


class RegionTask(Task):
    """A task on boxes of images. Its patch budget defaults to the checkpoint's own processing (as the
    official box-classification evaluation); a number runs each image at that budget (finer regions)."""

    def prepare(self, images: Sequence, boxes: Sequence):
        """Load images and check every box before any model work, so mistakes fail fast.

        Returns the images decoded (RGB PIL images, or the :class:`~fgdense.dense.ProcessedImage` given),
        the (N_i, 4) arrays and the source ``Detections`` (or None) per image.
        """
        check_box_lists(images, boxes)
        inputs = [loaded(image) for image in images]
        arrays, sources = [], []
        for i, (image, image_boxes) in enumerate(zip(inputs, boxes)):
            array, source = as_boxes(image_boxes)
            size = (rgb_of(image).height, rgb_of(image).width)
            validate_boxes(array, size, what="box" if len(inputs) == 1 else f"image {i} box")
            arrays.append(array)
            sources.append(source)
        return inputs, arrays, sources

    def region_features(self, images: Sequence, boxes: Sequence, progress: bool = False,
                        **overrides) -> list[torch.Tensor]:
        """RoIAlign region embeddings (N_i, D), not normalised, of every image's boxes: one pass per image.

        Equal to the official ``get_image_region_features`` run one box at a time. Images without boxes
        are not encoded at all.
        """
        settings = self.configured(**overrides)
        rgb, arrays, _ = self.prepare(images, boxes)
        dim = int(self.model.config.projection_dim) if self.model is not None else 0
        regions = self.pooled_regions(rgb, arrays, settings, progress)
        return [r if r is not None else torch.zeros(0, dim) for r in regions]

    def pooled_regions(self, rgb, arrays, settings, progress: bool) -> list[torch.Tensor | None]:
        """Region embeddings of checked inputs, ``batch_size`` images a pass; None where an image has no boxes."""
        out: list[torch.Tensor | None] = [None] * len(rgb)
        todo = [i for i, a in enumerate(arrays) if len(a)]
        size = settings.batch_size
        chunks = [todo[s : s + size] for s in range(0, len(todo), size)]
        bar = tqdm(total=len(todo), unit="image", desc="regions", disable=not progress or len(chunks) <= 1)
        for chunk in chunks:
            for i, feats in zip(chunk, self.image_features([rgb[i] for i in chunk], settings)):
                out[i] = feats.region_embeddings(arrays[i])
            bar.update(len(chunk))
        bar.close()
        return out


def cosine(regions: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(N, K) cosine of region embeddings (not normalised) to normalised text embeddings, on the CPU."""
    return F.normalize(regions.float().cpu(), dim=-1) @ text.float().cpu().T


__all__ = ["PROBABILITY_SCALE", "LabelScores", "RegionTask", "as_boxes", "check_box_lists", "cosine", "labelled_detections",
           "rounded"]
