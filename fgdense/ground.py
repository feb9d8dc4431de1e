"""Region-text grounding: which region does a phrase describe, among candidate boxes or found from scratch.

Phrases use the ``box`` walk when their tokens fit in 64 (the region-text alignment FG-CLIP 2 was
trained with) and the ``long`` walk (196 tokens) beyond; see :func:`walk_type_for`. Without candidate
boxes, each phrase's cosine heatmap over the dense features is cut into connected regions
(:func:`heatmap_proposals`), whose boxes are scored like candidates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import supervision as sv
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import TEXT_LENGTH
from .defaults import as_number
from .errors import FGDenseError
from .dense import loaded
from .processing.text import token_count
from .prompts import check_phrases
from .regions import RegionTask, cosine, labelled_detections, rounded
from .task import TaskSettings


@dataclass
class Grounding:
    """Phrases matched to one image's regions.

    With candidate boxes, ``scores`` (P, N) is the cosine of every phrase to every box, and the best box
    per phrase is its argmax. Without, each phrase's grid heatmap is cut into connected regions whose
    bounding boxes (in image pixels), scored like candidate boxes (region-embedding cosine), are that phrase's
    ``proposals`` best first. ``best_boxes`` (P, 4) / ``best_scores`` (P,) / ``best_indices`` (P,) give
    the winner per phrase (NaN / -1 where there is none: no candidate boxes). ``grid_heatmaps`` (P, h, w)
    are the phrases' cosine maps on the dense grid; :meth:`heatmaps` resizes them to the image.
    """

    phrases: list[str]
    walk_types: list[str]
    image_size: tuple[int, int]
    grid_heatmaps: np.ndarray
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
        maps, size = self.grid_heatmaps, tuple(size or self.image_size)
        if maps.shape[0] == 0:
            return np.zeros((0, *size), np.float32)
        maps = torch.from_numpy(np.asarray(maps, np.float32))
        return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0].numpy()

    def to_detections(self) -> sv.Detections:
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
                entry.update(box=rounded(self.best_boxes[p]), score=round(float(self.best_scores[p]), 6))
                if self.boxes is not None:
                    entry["box_index"] = int(self.best_indices[p])
            else:
                entry.update(box=None, score=None)
            if self.scores is not None:
                entry["scores"] = [round(float(s), 6) for s in self.scores[p]]
            if self.proposals is not None:
                entry["proposals"] = [{"xyxy": rounded(b), "score": round(float(s), 6)}
                                      for b, s in zip(self.proposals[p], self.proposal_scores[p])]
            out["phrases"].append(entry)
        return out


def walk_type_for(tokenizer, phrase: str) -> str:
    """The walk type for a phrase: ``box`` if its tokens (special tokens included) fit in 64, else ``long``.

    Box-walk texts are cut at 64 tokens, so a longer phrase would lose its end; the long walk reads 196
    (FG-CLIP 2's long-caption length; anything beyond is cut there too).
    """
    return "box" if token_count(tokenizer, phrase) <= TEXT_LENGTH["box"] else "long"


def heatmap_proposals(heatmap, threshold: float | str = "otsu", min_area_fraction: float = 0.001) -> np.ndarray:
    """Boxes (M, 4) xyxy of the connected regions where a heatmap is high, largest-mass first.

    "High" is decided per map, so the rule does not depend on the model's cosine range: with
    ``threshold="otsu"`` (default), above Otsu's threshold of the map's values (the level that best splits
    them into a high and a low group); with a number t in [0, 1], at least t of the way from the map's
    minimum to its maximum. Regions (4-connected) smaller than ``min_area_fraction`` of the map are noise
    and dropped. Boxes are in map units along cell edges: a region covering columns 3..7 gives x1 = 3, x2 = 8.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    level = check_proposal_threshold(threshold)
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


def check_proposal_threshold(threshold):
    """``"otsu"`` or a number from 0 to 1 (a level between a heatmap's minimum and maximum)."""
    if threshold == "otsu":
        return threshold
    value = as_number(threshold)
    if not 0.0 <= value <= 1.0:
        raise FGDenseError(f"proposal_threshold must be 'otsu' or a number from 0 to 1, got {threshold!r}")
    return value


@dataclasses.dataclass(frozen=True)
class GrounderSettings(TaskSettings):
    """:class:`~fgdense.task.TaskSettings` plus how boxes are proposed when no candidates are given:
    ``proposal_threshold`` (``"otsu"`` or a level in [0, 1], see :func:`heatmap_proposals`),
    ``max_proposals`` kept per phrase, ``min_area_fraction`` of the map below which a region is noise."""

    proposal_threshold: float | str = "otsu"
    max_proposals: int = 5
    min_area_fraction: float = 0.001

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "proposal_threshold", check_proposal_threshold(self.proposal_threshold))
        if isinstance(self.max_proposals, bool) or not isinstance(self.max_proposals, int) or self.max_proposals < 1:
            raise FGDenseError(f"max_proposals must be at least 1, got {self.max_proposals!r}")
        if not (isinstance(self.min_area_fraction, (int, float)) and 0 <= self.min_area_fraction < 1):
            raise FGDenseError(f"min_area_fraction must be a number in [0, 1), got {self.min_area_fraction!r}")


class Grounder(RegionTask):
    """Ground phrases (English or Chinese) in images: among candidate boxes, or proposed from heatmaps."""

    Settings = GrounderSettings
    walk = "box, long beyond 64 tokens"  # per phrase (walk_type_for); each phrase's JSON names its own

    def ground(self, image, phrases: Sequence[str] | str, *, boxes=None, **overrides) -> Grounding:
        """Ground ``phrases`` in ``image``: with ``boxes``, score each box; without, propose boxes."""
        return self.ground_batch([image], phrases, boxes=None if boxes is None else [boxes], **overrides)[0]

    def ground_batch(self, images: Sequence, phrases: Sequence[str] | str, *, boxes: Sequence | None = None,
                     progress: bool = False, **overrides) -> list[Grounding]:
        """:meth:`ground` for several images with the same phrases; ``boxes`` is None or one list per image.

        Proposals (no boxes): per phrase, its cosine map on the dense grid is cut by
        :func:`heatmap_proposals` into boxes along grid-cell edges (a finer ``max_num_patches`` gives finer
        boxes); they are scored by the cosine of their region embedding to the phrase (the same score as
        candidate boxes) and the best ``max_proposals`` kept, best first.
        """
        settings = self.configured(**overrides)
        phrases = check_phrases(phrases)
        if boxes is None:
            rgb, arrays, sources = [loaded(image) for image in images], [None] * len(images), [None] * len(images)
        else:
            rgb, arrays, sources = self.prepare(images, boxes)
        text, walks = self.phrase_embeddings(phrases, settings)
        results = []
        starts = range(0, len(rgb), settings.batch_size)
        bar = tqdm(total=len(rgb), unit="image", desc="grounding", disable=not progress or len(starts) <= 1)
        for start in starts:
            chunk = range(start, min(start + settings.batch_size, len(rgb)))
            feats = self.image_features([rgb[i] for i in chunk], settings)
            for i, image_feats in zip(chunk, feats):
                results.append(self._ground_one(image_feats, phrases, walks, text, arrays[i], sources[i], settings))
            bar.update(len(chunk))
        bar.close()
        return results

    def _ground_one(self, feats, phrases, walks, text, array, source, settings) -> Grounding:
        grid_maps = feats.similarity(text).float().cpu().numpy()  # numpy, as every result field
        count = len(phrases)
        best_boxes, best_scores = np.full((count, 4), np.nan), np.full(count, np.nan)
        best_indices = np.full(count, -1)
        if array is not None:
            scores = cosine(feats.region_embeddings(array), text).T.numpy()
            if len(array):
                best_indices = scores.argmax(axis=1)
                best_boxes, best_scores = array[best_indices], scores[np.arange(count), best_indices]
            return Grounding(phrases, walks, feats.image_size, grid_maps, best_boxes, best_scores, best_indices,
                             boxes=array, scores=scores, source=source)
        proposals, proposal_scores = [], []
        cell_h, cell_w = feats.cell_size
        for p in range(count):
            # Cut on the grid itself: the dense features hold no detail finer than a cell, so boxes run
            # along cell edges (an upsampled map would only add interpolation's guesses).
            found = heatmap_proposals(grid_maps[p], settings.proposal_threshold, settings.min_area_fraction)
            found = found * np.array([cell_w, cell_h, cell_w, cell_h])
            scores = np.zeros(0)
            if len(found):
                scores = cosine(feats.region_embeddings(found), text[p : p + 1])[:, 0].numpy()
                order = np.argsort(-scores, kind="stable")[: settings.max_proposals]
                found, scores = found[order], scores[order]
                best_boxes[p], best_scores[p], best_indices[p] = found[0], scores[0], 0
            proposals.append(found)
            proposal_scores.append(scores)
        return Grounding(phrases, walks, feats.image_size, grid_maps, best_boxes, best_scores, best_indices,
                         proposals=proposals, proposal_scores=proposal_scores)

    def phrase_embeddings(self, phrases: Sequence[str], settings=None) -> tuple[torch.Tensor, list[str]]:
        """Normalised embeddings (P, D) of phrases, each with the walk type its length calls for."""
        settings = settings or self.settings
        if self.tokenizer is None:
            raise FGDenseError("a tokenizer is needed to ground phrases: pass tokenizer= or use from_pretrained")
        walks = [walk_type_for(self.tokenizer, p) for p in phrases]
        rows: list[torch.Tensor | None] = [None] * len(phrases)
        for walk in dict.fromkeys(walks):
            index = [i for i, w in enumerate(walks) if w == walk]
            for i, row in zip(index, self.text_encoder(walk, settings).prompt_embeddings([phrases[i] for i in index])):
                rows[i] = row
        return F.normalize(torch.stack(rows).float(), dim=-1), walks


__all__ = ["Grounder", "GrounderSettings", "Grounding", "check_proposal_threshold", "heatmap_proposals",
           "walk_type_for"]
