"""Open-vocabulary box classification: label any detector's boxes with free text, English or Chinese.

    >>> classifier = BoxClassifier.from_pretrained("qihoo360/fg-clip2-base")
    >>> result = classifier.classify("street.jpg", detections, ["car", "公交车", "person|行人"])
    >>> result.to_detections().data["class_name"]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import supervision as sv
import torch

from .errors import FGDenseError
from .prompts import EncodedLabels, check_labels
from .regions import PROBABILITY_SCALE, LabelScores, RegionTask, cosine, labelled_detections, rounded
from .task import TaskSettings


@dataclass
class BoxClassification(LabelScores):
    """Scores of one image's N boxes over K labels.

    ``cosine`` (N, K) is the cosine similarity of region and label embeddings; ``probabilities`` (N, K)
    the official ``softmax(100 * cosine)`` over the labels; ``top_k`` (N, k) label indices, best first.
    ``source`` is the Detections the boxes came in (if any), whose fields :meth:`to_detections` keeps.
    """

    labels: list[str]
    boxes: np.ndarray
    cosine: np.ndarray
    probabilities: np.ndarray
    top_k: np.ndarray
    source: sv.Detections | None = dataclasses.field(default=None, repr=False)

    def to_detections(self) -> sv.Detections:
        """The boxes with ``class_id`` = best label, ``confidence`` = its probability, ``data["class_name"]``.

        Boxes that came as Detections keep their other fields; their own ``class_id``, ``confidence`` and
        ``class_name`` move to ``data["detector_class_id"]`` etc.
        """
        return labelled_detections(self.source, self.boxes, *self.best())

    def to_json(self) -> dict:
        boxes = [{"xyxy": rounded(self.boxes[i]), **self.scores_json(i)} for i in range(len(self.top_k))]
        return {"labels": list(self.labels), "boxes": boxes}


@dataclasses.dataclass(frozen=True)
class BoxClassifierSettings(TaskSettings):
    """:class:`~fgdense.task.TaskSettings` plus ``top_k``, the labels listed per box."""

    top_k: int = 5

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise FGDenseError(f"top_k must be at least 1, got {self.top_k!r}")


class BoxClassifier(RegionTask):
    """Open-vocabulary classification of boxes from any detector by their FG-CLIP 2 region embeddings."""

    Settings = BoxClassifierSettings

    def classify(self, image, boxes, labels: Sequence[str], **overrides) -> BoxClassification:
        """Score one image's boxes (an (N, 4) xyxy array or ``supervision.Detections``) over ``labels``."""
        return self.classify_batch([image], [boxes], labels, progress=False, **overrides)[0]

    def classify_batch(self, images: Sequence, boxes: Sequence, labels: Sequence[str] | EncodedLabels,
                       *, progress: bool = False, **overrides) -> list[BoxClassification]:
        """:meth:`classify` for many images (one box list each), ``batch_size`` images a backbone pass.

        ``labels`` may also be :class:`~fgdense.prompts.EncodedLabels` (embeddings made already, as the
        evaluation protocols make them)."""
        settings = self.configured(**overrides)
        if isinstance(labels, EncodedLabels):
            labels, text = labels.names, labels.embeddings
        else:
            labels = check_labels(labels)
            text = self.label_embeddings(labels, settings)
        k = min(settings.top_k, len(labels))
        rgb, arrays, sources = self.prepare(images, boxes)
        results = []
        for array, source, regions in zip(arrays, sources, self.pooled_regions(rgb, arrays, settings, progress)):
            if regions is None:
                regions = torch.zeros(0, text.shape[1])
            scores = cosine(regions, text)
            probabilities = torch.softmax(PROBABILITY_SCALE * scores, dim=-1)
            # Ranked by cosine: the probabilities rank the same, but far from the best they underflow to
            # equal zeros, whose order would be arbitrary.
            top = scores.topk(k, dim=-1).indices
            results.append(BoxClassification(list(labels), array, scores.numpy(), probabilities.numpy(), top.numpy(),
                                             source))
        return results


__all__ = ["BoxClassification", "BoxClassifier", "BoxClassifierSettings"]
