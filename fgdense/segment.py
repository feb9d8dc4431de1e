"""Open-vocabulary segmentation: free-text labels (Chinese or English) -> where each one is in an image.

The method FG-CLIP 2 is built for: dense patch features at a high patch budget, one embedding per label
with the ``box`` walk type (lower-cased, 64 tokens; synonyms ``"cat|猫"`` averaged; prompt templates
optional), cosine similarity of every patch to every label, bilinear upsampling to the image size,
argmax over the labels, and a background rule so pixels that match no label stay unlabelled:

* a score threshold: a pixel whose best cosine similarity is below it is background. ``"auto"`` is the
  threshold the checkpoint carries (``background_threshold`` in its config, calibrated on the masks of
  the data it was fine-tuned on) or, for checkpoints without one (the released ones), the cosine at
  which the model's own sigmoid calibration (``logit_scale``, ``logit_bias``) says 50 % match; a float
  sets it; ``None`` switches it off (pure argmax);
* explicit background labels (``"sky"``, ``"wall"``...): they compete in the argmax and the pixels
  they win are background.

Optionally the upsampled score maps are refined with a guided filter steered by the image, which snaps
the blurry patch-scale boundaries to image edges; or (``regions="superpixels"``) the image is labelled by
regions instead of pixels: every label's scores are averaged over each SLIC superpixel and the
superpixel is labelled as a whole (:mod:`fgdense.superpixels`). Given masks are labelled as a whole
by :class:`fgdense.classify_masks.MaskClassifier`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm import tqdm

from .defaults import DENSE_MAX_PATCHES, check_threshold
from .dense import DenseFeatures, loaded, rgb_of
from .errors import FGDenseError
from .prompts import check_labels
from .superpixels import check_superpixels_available
from .task import Task, TaskSettings

BACKGROUND = -1  # label-map value of pixels no label claims
# A result holds every label's score map at the image's full size, (labels, height, width) float32. An image
# whose maps would take more bytes than this is refused in one line before the model's work on it (a 48 MP
# photo with 40 labels would need 7.7 GB); raise it on a machine with the memory to spare.
MAX_SCORE_BYTES = 2 << 30
REGION_MODES = ("pixels", "superpixels", "objects")  # what one labelling decision covers


# --------------------------------------------------------------------------------------------- result
@dataclass
class SegmentationResult:
    """One image's segmentation.

    ``scores`` (K, H, W) float32: cosine similarity of every pixel to each label (refined if asked).
    ``label_map`` (H, W) int32: the index of the label each pixel belongs to, ``BACKGROUND`` (-1) for none.
    """

    labels: list[str]
    scores: np.ndarray
    label_map: np.ndarray
    threshold: float | None = None
    background_labels: list[str] = field(default_factory=list)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.label_map.shape[0]), int(self.label_map.shape[1])

    @property
    def masks(self) -> np.ndarray:
        """(K, H, W) bool: one binary mask per label."""
        return self.label_map[None] == np.arange(len(self.labels))[:, None, None]

    def mask(self, label: str | int) -> np.ndarray:
        return self.label_map == self._index(label)

    def _index(self, label: str | int) -> int:
        if isinstance(label, (int, np.integer)):
            if not 0 <= label < len(self.labels):
                raise IndexError(f"label index {label} out of range for {len(self.labels)} labels")
            return int(label)
        if label not in self.labels:
            raise KeyError(f"{label!r} is not one of the labels {self.labels}")
        return self.labels.index(label)

    def areas(self) -> list[int]:
        """Pixel count of each label's mask."""
        counts = np.bincount(self.label_map[self.label_map >= 0].ravel(), minlength=len(self.labels))
        return [int(c) for c in counts[: len(self.labels)]]

    def mean_scores(self) -> list[float | None]:
        """Mean score of each label over its own mask (None where the label is absent)."""
        out = []
        for k in range(len(self.labels)):
            inside = self.label_map == k
            out.append(float(self.scores[k][inside].mean()) if inside.any() else None)
        return out

    def to_detections(self, split_components: bool = False, min_area: int = 1):
        """``supervision.Detections``, one per label present (or per connected component of it).

        Each has ``mask`` (H, W), ``xyxy`` from the mask in pixels (right/bottom exclusive, so a box
        covers exactly the mask's pixels), ``class_id`` (index into ``labels``), ``confidence`` (mean
        score over the mask) and ``data["class_name"]``. Pieces under ``min_area`` pixels are dropped.
        """
        import supervision as sv

        masks, class_ids, confidences = [], [], []
        for k in range(len(self.labels)):
            whole = self.label_map == k
            if not whole.any():
                continue
            pieces = _components(whole) if split_components else [whole]
            for piece in pieces:
                if int(piece.sum()) >= min_area:
                    masks.append(piece)
                    class_ids.append(k)
                    confidences.append(float(self.scores[k][piece].mean()))
        height, width = self.image_size
        if not masks:
            return sv.Detections(xyxy=np.zeros((0, 4), np.float32), mask=np.zeros((0, height, width), bool),
                                 confidence=np.zeros(0, np.float32), class_id=np.zeros(0, int),
                                 data={"class_name": np.array([], dtype=str)})
        stack = np.stack(masks)
        return sv.Detections(
            xyxy=np.stack([mask_to_xyxy(m) for m in stack]).astype(np.float32),
            mask=stack,
            confidence=np.array(confidences, np.float32),
            class_id=np.array(class_ids, int),
            data={"class_name": np.array([self.labels[k] for k in class_ids])},
        )

    def to_json(self) -> dict:
        """JSON-ready description: per label its pixel area, mean score and COCO RLE mask."""
        height, width = self.image_size
        segments = []
        for k, (label, area, mean) in enumerate(zip(self.labels, self.areas(), self.mean_scores())):
            segments.append({
                "label": label,
                "class_id": k,
                "label_map_value": k + 1,
                "area": area,
                "area_fraction": area / float(height * width),
                "mean_score": mean,
                "max_score": float(self.scores[k].max()),
                "rle": mask_to_rle(self.label_map == k),
            })
        return {
            "image_size_hw": [height, width],
            "labels": list(self.labels),
            "background_labels": list(self.background_labels),
            "threshold": self.threshold,
            "background_area": int((self.label_map == BACKGROUND).sum()),
            "segments": segments,
        }


def mask_to_xyxy(mask: np.ndarray) -> np.ndarray:
    """The box of a non-empty mask as supervision gives it (``supervision.mask_to_xyxy``): x_min, y_min,
    x_max, y_max of its first and last pixels, both ends inclusive. Results' ``to_detections()`` use it, so
    the boxes agree with what users compute from the same masks."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], np.float32)


def mask_extent(mask: np.ndarray) -> np.ndarray:
    """The area a non-empty mask covers, [x0, y0, x1, y1) in image coordinates (x1, y1 one past the last
    pixel): the box RoIAlign pools for it, since a box in fgdense's image coordinates spans [x0, x1)."""
    x0, y0, x1, y1 = mask_to_xyxy(mask)
    return np.array([x0, y0, x1 + 1, y1 + 1], np.float32)


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO run-length encoding of a binary mask, JSON-ready (counts as a string)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a binary mask, largest first."""
    import cv2

    count, labelled = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    pieces = [labelled == i for i in range(1, count)]
    return sorted(pieces, key=lambda p: -int(p.sum()))


# A piece of foreground whose box covers more than this share of the image is not an object but a
# scene region (sky, road, a wall): a box average over most of the image says nothing about it, so it
# keeps its pixels' labels.
OBJECT_MAX_BOX_SHARE = 0.5


def _label_objects(feats: DenseFeatures, label_map: np.ndarray, text, count: int) -> np.ndarray:
    """Each connected, object-sized piece of foreground relabelled as a whole: the label (of ``count``;
    the rest of ``text`` are background labels) its box's region embedding is closest to."""
    import torch.nn.functional as F

    height, width = label_map.shape
    pieces = [p for p in _components(label_map != BACKGROUND) if p.any()]
    boxes = np.stack([mask_extent(piece) for piece in pieces]) if pieces else np.zeros((0, 4), np.float32)
    small = [i for i, b in enumerate(boxes) if (b[2] - b[0]) * (b[3] - b[1]) <= OBJECT_MAX_BOX_SHARE * height * width]
    if not small:
        return label_map
    # The piece's box, not its mask: a box's RoIAlign average holds the object and the background around
    # it, which is what the region objectives train and what tells shapes apart (docs/quality.md).
    pooled = F.normalize(feats.region_embeddings(boxes[small]).float(), dim=-1)
    best = (pooled @ F.normalize(text.float().to(pooled.device), dim=-1).T).argmax(1).tolist()
    out = label_map.copy()
    for i, k in zip(small, best):
        out[pieces[i]] = k if k < count else BACKGROUND
    return out


# ----------------------------------------------------------------------------------------- refinement
def guided_filter(guide: np.ndarray, maps: np.ndarray, radius: int, eps: float = 1e-3) -> np.ndarray:
    """Edge-aware smoothing of (K, H, W) maps steered by a (H, W) guide in [0, 1] (He et al. 2010).

    Inside a window the output is a linear function of the guide, so map boundaries move onto the
    guide's edges; ``eps`` sets how strong an edge must be to be followed.
    """
    import cv2

    size = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    guide = guide.astype(np.float32)
    mean_i = box(guide)
    var_i = box(guide * guide) - mean_i * mean_i
    out = np.empty_like(maps, dtype=np.float32)
    for k, p in enumerate(maps.astype(np.float32)):
        mean_p = box(p)
        a = (box(guide * p) - mean_i * mean_p) / (var_i + eps)
        b = mean_p - a * mean_i
        out[k] = box(a) * guide + box(b)
    return out


# ------------------------------------------------------------------------------------------ segmenter
@dataclasses.dataclass(frozen=True)
class SegmenterSettings(TaskSettings):
    """:class:`~fgdense.task.TaskSettings` plus the background rule and refinement.

    ``threshold``: ``"auto"`` (the model's 50 % match point), a cosine, or ``None`` (pure argmax);
    ``background_labels``: labels whose pixels are background; ``refine``: snap boundaries to image
    edges with a guided filter of strength ``refine_eps``; ``regions``: ``"pixels"`` (each pixel its own
    decision), ``"superpixels"`` (scores averaged over SLIC superpixels, one decision each) or
    ``"objects"`` (the background rule per pixel, then each connected piece of foreground whose box is
    at most half the image labelled as a whole by the region embedding of its box; the default, measured
    best in docs/quality.md). The patch budget defaults to ``"auto"``.
    """

    max_num_patches: int | str | None = DENSE_MAX_PATCHES  # fgdense.defaults: the tool and the demo share it
    threshold: float | str | None = "auto"
    background_labels: tuple[str, ...] = ()
    refine: bool = False
    refine_eps: float = 1e-3
    regions: str = "objects"

    def __post_init__(self):
        super().__post_init__()
        if self.regions not in REGION_MODES:
            raise FGDenseError(f"regions must be one of {', '.join(REGION_MODES)}, got {self.regions!r}")
        if self.regions == "superpixels":
            check_superpixels_available()
        object.__setattr__(self, "background_labels", tuple(self.background_labels))
        object.__setattr__(self, "threshold", check_threshold(self.threshold))
        if not (isinstance(self.refine_eps, (int, float)) and np.isfinite(self.refine_eps) and self.refine_eps > 0):
            raise FGDenseError(f"refine_eps must be a positive number, got {self.refine_eps!r}")


def check_score_memory(height: int, width: int, labels: int) -> None:
    """Refuse an image whose score maps (``labels`` of them, background labels included) would take more
    than :data:`MAX_SCORE_BYTES`, in one line saying what would fit."""
    need = 4 * labels * height * width
    if need > MAX_SCORE_BYTES:
        fits = max(0, MAX_SCORE_BYTES // (4 * height * width))
        raise FGDenseError(f"a {width}x{height} image with {labels} labels needs {need / 1e9:.1f} GB of score maps, "
                           f"more than fgdense.segment.MAX_SCORE_BYTES ({MAX_SCORE_BYTES / 2**30:g} GiB): give at "
                           f"most {fits} labels for an image this size, or a smaller image")


class Segmenter(Task):
    """Open-vocabulary segmentation with an FG-CLIP 2 model.

    ``Segmenter.from_pretrained(name_or_path, device=..., **settings)`` (or ``Segmenter(model, processor,
    tokenizer, **settings)``), then ``segment(image, ["电脑", "cat|猫"])``; settings are in
    :class:`SegmenterSettings` and can be overridden per call.
    """

    Settings = SegmenterSettings

    def auto_threshold(self) -> float | None:
        """The checkpoint's calibrated background threshold if it carries one, else the cosine where
        sigmoid(logit_scale.exp() * cos + logit_bias) = 0.5, the model's own match point."""
        calibrated = getattr(getattr(self.model, "config", None), "background_threshold", None)
        if calibrated is not None:
            return float(calibrated)
        scale, bias = getattr(self.model, "logit_scale", None), getattr(self.model, "logit_bias", None)
        if scale is None or bias is None:
            return None
        return float(-bias.detach().float().cpu() / scale.detach().float().exp().cpu())

    def resolve_threshold(self, threshold) -> float | None:
        """The cosine a threshold setting stands for (``None``: no threshold)."""
        threshold = check_threshold(threshold)
        return self.auto_threshold() if threshold == "auto" else threshold

    # ----------------------------------------------------------------------------------- segmenting
    def segment(self, image, labels: Sequence[str] | str, **overrides) -> SegmentationResult:
        """Segment one image (path, PIL image or array) into ``labels`` plus background."""
        return self.segment_batch([image], labels, **overrides)[0]

    def segment_batch(self, images: Sequence, labels: Sequence[str] | str, *, progress: bool = False,
                      **overrides) -> list[SegmentationResult]:
        """Segment several images with the same labels: one text encoding, ``batch_size`` images a backbone
        pass, each pass decided before the next is computed (so memory holds one pass's features, not all);
        ``progress`` shows a bar over the images."""
        settings = self.configured(**overrides)
        threshold = self.resolve_threshold(settings.threshold)
        background = list(settings.background_labels)
        labels = check_labels(labels)
        # Checked together: a label that is also a background label is a mistake.
        check_labels(labels + background, "label (including background labels)")
        inputs = [loaded(im) for im in images]  # decoded once; a ProcessedImage keeps its processing
        rgb = [rgb_of(im) for im in inputs]
        for image in rgb:
            check_score_memory(image.height, image.width, len(labels) + len(background))
        text = self.label_embeddings(labels + background, settings)
        results: list[SegmentationResult] = []
        starts = range(0, len(inputs), settings.batch_size)
        bar = tqdm(total=len(inputs), unit="image", desc="segmenting", disable=not progress or len(starts) <= 1)
        for start in starts:
            chunk = slice(start, start + settings.batch_size)
            feats = self.image_features(inputs[chunk], settings)
            results += [self._decide(f, im, text, labels, background, threshold, settings)
                        for f, im in zip(feats, rgb[chunk])]
            bar.update(len(feats))
        bar.close()
        return results

    def _decide(self, feats: DenseFeatures, image, text, labels, background, threshold, settings) -> SegmentationResult:
        scores = feats.upsample(feats.similarity(text)).cpu().numpy().astype(np.float32, copy=False)  # no 2nd copy
        if settings.refine:
            guide = np.asarray(image.convert("L"), np.float32) / 255.0
            radius = max(1, int(round(max(feats.cell_size))))
            scores = guided_filter(guide, scores, radius, settings.refine_eps)
        if settings.regions == "superpixels":
            from .superpixels import region_average, superpixels

            scores = region_average(scores, superpixels(image))
        best = scores.argmax(0).astype(np.int32)
        label_map = np.where(best < len(labels), best, BACKGROUND).astype(np.int32)
        if threshold is not None:
            label_map[scores.max(0) < threshold] = BACKGROUND
        if settings.regions == "objects":
            label_map = _label_objects(feats, label_map, text, len(labels))
        return SegmentationResult(list(labels), scores[: len(labels)], label_map, threshold, background)


__all__ = ["BACKGROUND", "MAX_SCORE_BYTES", "REGION_MODES", "Segmenter", "check_score_memory",
           "SegmenterSettings", "SegmentationResult", "check_threshold", "guided_filter",
           "mask_extent", "mask_to_rle", "mask_to_xyxy"]
