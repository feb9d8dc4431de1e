"""Region embeddings for detectors: open-vocabulary box classification and region-text grounding.

A box's embedding is FG-CLIP 2's region feature: RoIAlign 1x1 of the image's dense features at the box
(see :meth:`fgdense.dense.DenseFeatures.region_embeddings`). Every box of an image is pooled from ONE
backbone pass over that image; the official evaluation re-encodes the whole image for each box, with
the same numbers (tested) at a fraction of the speed.

- :class:`BoxClassifier` scores boxes (an (N, 4) xyxy array or a ``supervision.Detections``) against
  free-text labels, English or Chinese, and returns labelled ``supervision.Detections``.
- :class:`Grounder` matches phrases to candidate boxes, or, without boxes, finds them from the
  phrase's heatmap over the dense features.

Boxes are xyxy in pixels of the image as :func:`fgdense.load_image` reads it (EXIF orientation applied).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import supervision as sv
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .dense import GPU_DEFAULT_PATCHES, DenseFeatures, dense_features_batch, features_of_processed, processor_for
from .errors import BoxError
from .model.boxes import validate_boxes
from .processing import FGCLIP2ImageProcessor, check_texts, load_image, load_tokenizer
from .prompts import LabelEncoder, check_labels

BOX_WALK_TOKENS = 64  # phrases up to this many tokens use the box walk; longer ones the long walk
PROBABILITY_SCALE = 100.0  # the official probabilities are softmax(100 * cosine)


# ------------------------------------------------------------------------------------------- inputs
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


def read_boxes_file(path) -> np.ndarray:
    """(N, 4) xyxy pixel boxes from a JSON file.

    Accepted: a list of ``[x1, y1, x2, y2]``; a list of objects with an ``"xyxy"`` entry; or an object
    whose ``"boxes"`` holds either (so the output of ``tools/classify_boxes.py`` can be read back).
    """
    path = Path(path)
    if not path.exists() or path.is_dir():  # exists(), not is_file(): pipes like <(...) are fine
        raise BoxError(f"boxes file {path} does not exist")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise BoxError(f"boxes file {path} is not valid JSON: {err}") from None
    if isinstance(value, dict):
        value = value.get("boxes")
    if not isinstance(value, list):
        raise BoxError(f"boxes file {path}: expected a list of [x1, y1, x2, y2] boxes (or {{\"boxes\": [...]}})")
    rows = []
    for index, item in enumerate(value):
        box = item.get("xyxy") if isinstance(item, dict) else item
        if not (isinstance(box, list) and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise BoxError(f"boxes file {path}: box {index} is not [x1, y1, x2, y2] numbers: {item!r}"[:300])
        rows.append(box)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _box_lists(images: Sequence, boxes: Sequence, what: str = "box list") -> None:
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise ValueError(f"expected a list of images, got {type(images).__name__}")
    if isinstance(boxes, sv.Detections) or not isinstance(boxes, Sequence) or len(images) != len(boxes):
        got = len(boxes) if isinstance(boxes, Sequence) else f"a {type(boxes).__name__}"
        raise ValueError(f"need one {what} per image: {len(images)} images but {got} {what}s")


# ------------------------------------------------------------------------------------------ results
@dataclass
class BoxClassification:
    """Scores of one image's N boxes over K labels.

    ``cosine`` (N, K) is the cosine similarity of region and label embeddings; ``probabilities`` (N, K)
    the official ``softmax(100 * cosine)`` over the labels; ``top_k`` (N, k) label indices, best first.
    ``detections`` carries the boxes with ``class_id`` = best label, ``confidence`` = its probability and
    ``data["class_name"]``; the input Detections' other fields are kept, and its own ``class_id``,
    ``confidence`` and ``class_name`` move to ``data["detector_class_id"]`` etc.
    """

    labels: list[str]
    boxes: np.ndarray
    cosine: np.ndarray
    probabilities: np.ndarray
    top_k: np.ndarray
    detections: sv.Detections

    @property
    def top_labels(self) -> list[list[str]]:
        return [[self.labels[j] for j in row] for row in self.top_k.tolist()]

    def to_json(self) -> dict:
        boxes = []
        for i, row in enumerate(self.top_k.tolist()):
            boxes.append({
                "xyxy": [round(float(v), 2) for v in self.boxes[i]],
                "label": self.labels[row[0]],
                "probability": round(float(self.probabilities[i, row[0]]), 6),
                "cosine": round(float(self.cosine[i, row[0]]), 6),
                "top_k": [{"label": self.labels[j], "probability": round(float(self.probabilities[i, j]), 6),
                           "cosine": round(float(self.cosine[i, j]), 6)} for j in row],
            })
        return {"labels": list(self.labels), "boxes": boxes}


@dataclass
class Grounding:
    """Phrases matched to one image's regions.

    With candidate boxes, ``scores`` (P, N) is the cosine of every phrase to every box, and the best box
    per phrase is its argmax. Without, each phrase's grid heatmap is thresholded into connected regions whose
    bounding boxes (in image pixels), scored like candidate boxes (region-embedding cosine), are that phrase's
    ``proposals`` best first. ``best_boxes`` (P, 4) / ``best_scores`` (P,) / ``best_indices`` (P,) give
    the winner per phrase (NaN / -1 where there is none: no candidate boxes). ``grid_heatmaps`` (P, h, w)
    are the phrases' cosine maps on the dense grid; :meth:`heatmaps` resizes them to the image.
    """

    phrases: list[str]
    walk_types: list[str]
    image_size: tuple[int, int]
    grid_heatmaps: torch.Tensor
    best_boxes: np.ndarray
    best_scores: np.ndarray
    best_indices: np.ndarray
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    proposals: list[np.ndarray] | None = None
    proposal_scores: list[np.ndarray] | None = None
    source: sv.Detections | None = field(default=None, repr=False)

    def heatmaps(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """(P, H, W) cosine heatmaps, bilinearly resized to the image (or ``size``)."""
        return _resize_maps(self.grid_heatmaps, size or self.image_size).numpy()

    @property
    def detections(self) -> sv.Detections:
        """The best box of every phrase that has one: class_id = phrase index, confidence = cosine."""
        found = np.flatnonzero(self.best_indices >= 0)
        source = self.source[self.best_indices[found]] if self.source is not None else None
        return labelled_detections(source, self.best_boxes[found], found, self.best_scores[found],
                                   [self.phrases[p] for p in found])

    def to_json(self) -> dict:
        out = {"phrases": []}
        for p, phrase in enumerate(self.phrases):
            entry = {"phrase": phrase, "walk_type": self.walk_types[p]}
            if self.best_indices[p] >= 0:
                entry.update(box=_rounded(self.best_boxes[p]), score=round(float(self.best_scores[p]), 6))
                if self.boxes is not None:
                    entry["box_index"] = int(self.best_indices[p])
            else:
                entry.update(box=None, score=None)
            if self.scores is not None:
                entry["scores"] = [round(float(s), 6) for s in self.scores[p]]
            if self.proposals is not None:
                entry["proposals"] = [{"xyxy": _rounded(b), "score": round(float(s), 6)}
                                      for b, s in zip(self.proposals[p], self.proposal_scores[p])]
            out["phrases"].append(entry)
        return out


def _rounded(box) -> list[float]:
    return [round(float(v), 2) for v in box]


def _resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if maps.shape[0] == 0:
        return maps.new_zeros(0, *size)
    return F.interpolate(maps[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]


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


# ------------------------------------------------------------------------------ shared backbone part
class RegionModel:
    """What box classification and grounding share: images -> dense features, texts -> embeddings.

    ``max_num_patches=None`` (default) processes every image as the checkpoint's own processor does,
    image alone: with the released checkpoints, the dynamic budget of 128 to 1024 patches picked from the
    image's size, as in the official box-classification evaluation. An integer runs each image at that
    patch budget instead (more patches: finer regions, slower).

    Plugging in another backbone (the tests plant known features this way): override
    :meth:`image_features`, and give ``encoders`` whose ``prompt_embeddings`` return what you want.
    """

    def __init__(self, model, tokenizer=None, processor=None, *, max_num_patches: int | None = None,
                 templates: bool | Sequence[str] = False, batch_size: int = 8, precision: str = "auto",
                 max_batch_tokens: int | None = None):
        if max_num_patches is not None and int(max_num_patches) < 1:
            raise ValueError(f"max_num_patches must be positive, got {max_num_patches}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        folder = getattr(model, "checkpoint_folder", None)
        if tokenizer is None and folder is not None:
            tokenizer = load_tokenizer(folder)
        self.tokenizer = tokenizer
        self.processor = processor_for(model, processor)
        self.max_num_patches = None if max_num_patches is None else int(max_num_patches)
        self.templates = templates
        self.batch_size = int(batch_size)
        self.precision = precision
        self.max_batch_tokens = max_batch_tokens or GPU_DEFAULT_PATCHES
        # One cache per walk type: label/phrase embeddings are computed once across calls.
        self.encoders = {walk: LabelEncoder(model, tokenizer, walk) for walk in ("box", "long")}

    @classmethod
    def from_pretrained(cls, checkpoint, device=None, dtype=None, **kwargs):
        """Load model, tokenizer and image processor from a checkpoint folder or hub id."""
        from .model import FGCLIP2Model

        model = FGCLIP2Model.from_pretrained(checkpoint, device=device, dtype=dtype)
        return cls(model, load_tokenizer(checkpoint), FGCLIP2ImageProcessor.from_pretrained(checkpoint), **kwargs)

    # ---------------------------------------------------------------------------------- images
    def image_features(self, images: Sequence) -> list[DenseFeatures]:
        """Dense features of RGB images, one backbone pass each (images of equal patch count batched)."""
        if not images:
            return []
        if self.max_num_patches is not None:
            return dense_features_batch(self.model, images, self.processor, self.max_num_patches,
                                        self.max_batch_tokens, self.precision)
        # The checkpoint's processing, each image alone (its own dynamic budget); only the real patch
        # rows are kept, so padding never enters the computation (see dense_grids).
        processed = [self.processor(image) for image in images]
        return features_of_processed(self.model, processed, images, self.max_batch_tokens, self.precision)

    def region_features(self, images: Sequence, boxes: Sequence, progress: bool = True) -> list[torch.Tensor]:
        """RoIAlign region embeddings (N_i, D), not normalised, of every image's boxes: one pass per image.

        Equal to the official ``get_image_region_features`` run one box at a time. Images without boxes
        are not encoded at all.
        """
        rgb, arrays, _ = self._prepare(images, boxes)
        dim = int(self.model.config.projection_dim) if self.model is not None else 0
        return [r if r is not None else torch.zeros(0, dim) for r in self._regions(rgb, arrays, progress)]

    def _prepare(self, images, boxes):
        """Load images and check every box before any model work, so mistakes fail fast."""
        _box_lists(images, boxes)
        rgb = [load_image(image) for image in images]
        arrays, sources = [], []
        for i, (image, image_boxes) in enumerate(zip(rgb, boxes)):
            array, source = as_boxes(image_boxes)
            what = "box" if len(rgb) == 1 else f"image {i} box"
            validate_boxes(array, (image.height, image.width), what=what)
            arrays.append(array)
            sources.append(source)
        return rgb, arrays, sources

    def _regions(self, rgb, arrays, progress: bool) -> list[torch.Tensor | None]:
        out: list[torch.Tensor | None] = [None] * len(rgb)
        todo = [i for i, a in enumerate(arrays) if len(a)]
        chunks = [todo[s : s + self.batch_size] for s in range(0, len(todo), self.batch_size)]
        bar = tqdm(total=len(todo), unit="image", desc="regions", disable=not progress or len(chunks) <= 1)
        for chunk in chunks:
            for i, feats in zip(chunk, self.image_features([rgb[i] for i in chunk])):
                out[i] = feats.region_embeddings(arrays[i])
            bar.update(len(chunk))
        bar.close()
        return out  # None where an image has no boxes

    # ----------------------------------------------------------------------------------- texts
    def label_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """Normalised ``box``-walk embeddings (K, D) of labels (``cat|猫`` synonyms, optional templates)."""
        return self.encoders["box"](labels, self.templates)

    def walk_type(self, phrase: str) -> str:
        """``box`` for a phrase that fits the 64-token box walk, ``long`` for a longer one."""
        if self.tokenizer is None:
            raise ValueError("a tokenizer is needed to choose walk types; pass tokenizer=")
        return walk_type_for(self.tokenizer, phrase)

    def phrase_embeddings(self, phrases: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
        """Normalised embeddings (P, D) of phrases, each with the walk type its length calls for."""
        walks = [self.walk_type(p) for p in phrases]
        rows: list[torch.Tensor | None] = [None] * len(phrases)
        for walk in dict.fromkeys(walks):
            index = [i for i, w in enumerate(walks) if w == walk]
            for i, row in zip(index, self.encoders[walk].prompt_embeddings([phrases[i] for i in index])):
                rows[i] = row
        return F.normalize(torch.stack(rows).float(), dim=-1), walks


def walk_type_for(tokenizer, phrase: str) -> str:
    """The walk type for a phrase: ``box`` if its tokens (special tokens included) fit in 64, else ``long``.

    Box-walk texts are cut at 64 tokens, so a longer phrase would lose its end; the long walk reads 196
    (FG-CLIP 2's long-caption length; anything beyond is cut there too).
    """
    count = len(tokenizer(phrase.lower())["input_ids"])
    return "box" if count <= BOX_WALK_TOKENS else "long"


# ------------------------------------------------------------------------------ box classification
class BoxClassifier(RegionModel):
    """Open-vocabulary classification of boxes from any detector by their FG-CLIP 2 region embeddings.

    >>> classifier = BoxClassifier.from_pretrained("qihoo360/fg-clip2-base")
    >>> result = classifier.classify("street.jpg", detections, ["car", "公交车", "person|行人"])
    >>> result.detections.data["class_name"]
    """

    def classify(self, image, boxes, labels: Sequence[str], top_k: int = 5) -> BoxClassification:
        """Score one image's boxes (an (N, 4) xyxy array or ``supervision.Detections``) over ``labels``."""
        return self.classify_batch([image], [boxes], labels, top_k, progress=False)[0]

    def classify_batch(self, images: Sequence, boxes: Sequence, labels: Sequence[str], top_k: int = 5,
                       progress: bool = True) -> list[BoxClassification]:
        """:meth:`classify` for many images (one box list each), batched ``batch_size`` images a pass."""
        labels = check_labels(labels)
        if int(top_k) < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        k = min(int(top_k), len(labels))
        rgb, arrays, sources = self._prepare(images, boxes)
        text = self.label_embeddings(labels)
        results = []
        for array, source, regions in zip(arrays, sources, self._regions(rgb, arrays, progress)):
            if regions is None:
                regions = torch.zeros(0, text.shape[1])
            # N x K numbers: the CPU is the right place, whatever device the backbone ran on.
            cosine = F.normalize(regions.float().cpu(), dim=-1) @ text.float().T
            probabilities = torch.softmax(PROBABILITY_SCALE * cosine, dim=-1)
            top = probabilities.topk(k, dim=-1).indices
            best = top[:, 0]
            detections = labelled_detections(source, array, best.numpy(),
                                             probabilities.gather(1, best[:, None])[:, 0].numpy(),
                                             [labels[j] for j in best.tolist()])
            results.append(BoxClassification(list(labels), array, cosine.numpy(), probabilities.numpy(),
                                             top.numpy(), detections))
        return results


# -------------------------------------------------------------------------------------- grounding
def heatmap_proposals(heatmap, threshold: float | str = "otsu", min_area_fraction: float = 0.001) -> np.ndarray:
    """Boxes (M, 4) xyxy of the connected regions where a heatmap is high, largest-mass first.

    "High" is decided per map, so the rule does not depend on the model's cosine range: with
    ``threshold="otsu"`` (default), above Otsu's threshold of the map's values (the level that best splits
    them into a high and a low group); with a number t in [0, 1], at least t of the way from the map's
    minimum to its maximum. Regions (4-connected) smaller than ``min_area_fraction`` of the map are noise
    and dropped. Boxes are in map units along cell edges: a region covering columns 3..7 gives x1 = 3, x2 = 8.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    level = _check_threshold(threshold)
    if heat.size == 0:
        return np.zeros((0, 4))
    lo, hi = float(heat.min()), float(heat.max())
    if hi - lo <= 1e-12:  # a flat map: nothing stands out, the whole map is the one region
        return np.array([[0.0, 0.0, heat.shape[1], heat.shape[0]]])
    # OpenCV's Otsu works on 8-bit maps: 256 levels between min and max are plenty to place one cut.
    scaled = np.round((heat - lo) / (hi - lo) * 255).astype(np.uint8)
    if level == "otsu":
        _, mask = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        mask = (heat >= lo + level * (hi - lo)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    mass = np.bincount(labels.ravel(), weights=(heat - lo).ravel(), minlength=count)
    # Component 0 is the background (mask == 0).
    smallest = max(1.0, min_area_fraction * heat.size)
    keep = [i for i in np.argsort(-mass) if i > 0 and stats[i, cv2.CC_STAT_AREA] >= smallest]
    x, y, w, h = (stats[keep, k].astype(np.float64) for k in
                  (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    return np.stack([x, y, x + w, y + h], axis=1).reshape(-1, 4)


def _check_threshold(threshold):
    if threshold == "otsu":
        return threshold
    if isinstance(threshold, str) or not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be 'otsu' or a number in [0, 1], got {threshold!r}")
    return float(threshold)


class Grounder(RegionModel):
    """Which region does a phrase describe? Among candidate boxes, or found from the phrase's heatmap.

    Phrases use the ``box`` walk when their tokens fit in 64 (the region-text alignment FG-CLIP 2 was
    trained with) and the ``long`` walk (196 tokens) beyond; see :func:`walk_type_for`.
    """

    def ground(self, image, phrases: Sequence[str] | str, boxes=None, *, threshold: float | str = "otsu",
               max_proposals: int = 5, min_area_fraction: float = 0.001) -> Grounding:
        """Ground ``phrases`` in ``image``: with ``boxes``, score each box; without, propose boxes.

        Proposals (no ``boxes``): per phrase, its cosine map on the dense grid is cut by
        :func:`heatmap_proposals` (``threshold``, ``min_area_fraction``) into boxes along grid-cell edges
        (a finer ``max_num_patches`` gives finer boxes); the boxes are scored by the
        cosine of their region embedding to the phrase (the same score as candidate boxes) and the best
        ``max_proposals`` kept, best first.
        """
        phrases = check_texts(phrases, "phrase")
        for i, phrase in enumerate(phrases):
            if not phrase.strip():
                raise ValueError(f"phrase {i} is blank")
        if int(max_proposals) < 1:
            raise ValueError(f"max_proposals must be at least 1, got {max_proposals}")
        _check_threshold(threshold)
        if boxes is None:
            rgb, array, source = [load_image(image)], None, None
        else:
            rgb, arrays, sources = self._prepare([image], [boxes])
            array, source = arrays[0], sources[0]
        text, walks = self.phrase_embeddings(phrases)
        feats = self.image_features(rgb)[0]
        size = feats.image_size
        grid_maps = feats.similarity(text).cpu()
        count = len(phrases)
        best_boxes, best_scores = np.full((count, 4), np.nan), np.full(count, np.nan)
        best_indices = np.full(count, -1)
        if array is not None:
            regions = feats.region_embeddings(array)
            scores = (text.to(regions.device) @ F.normalize(regions.float(), dim=-1).T).cpu().numpy()
            if len(array):
                best_indices = scores.argmax(axis=1)
                best_boxes, best_scores = array[best_indices], scores[np.arange(count), best_indices]
            return Grounding(phrases, walks, size, grid_maps, best_boxes, best_scores, best_indices,
                             boxes=array, scores=scores, source=source)
        proposals, proposal_scores = [], []
        cell_h, cell_w = feats.cell_size
        for p in range(count):
            # Cut on the grid itself: the dense features hold no detail finer than a cell, so boxes run
            # along cell edges (an upsampled map would only add interpolation's guesses).
            found = heatmap_proposals(grid_maps[p].numpy(), threshold, min_area_fraction)
            found = found * np.array([cell_w, cell_h, cell_w, cell_h])
            scores = np.zeros(0)
            if len(found):
                regions = F.normalize(feats.region_embeddings(found).float(), dim=-1)
                scores = (regions @ text[p].to(regions.device)).cpu().numpy()
                order = np.argsort(-scores, kind="stable")[: int(max_proposals)]
                found, scores = found[order], scores[order]
                best_boxes[p], best_scores[p], best_indices[p] = found[0], scores[0], 0
            proposals.append(found)
            proposal_scores.append(scores)
        return Grounding(phrases, walks, size, grid_maps, best_boxes, best_scores, best_indices,
                         proposals=proposals, proposal_scores=proposal_scores)


__all__ = [
    "BoxClassifier", "BoxClassification", "Grounder", "Grounding", "RegionModel", "as_boxes",
    "heatmap_proposals", "labelled_detections", "read_boxes_file", "walk_type_for", "BOX_WALK_TOKENS",
]
