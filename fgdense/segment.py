"""Open-vocabulary segmentation: free-text labels (Chinese or English) -> where each one is in an image.

The method FG-CLIP 2 is built for: dense patch features at a high patch budget, one embedding per label
with the ``box`` walk type (lower-cased, 64 tokens; synonyms ``"cat|猫"`` averaged; prompt templates
optional), cosine similarity of every patch to every label, bilinear upsampling to the image size,
argmax over the labels, and a background rule so pixels that match no label stay unlabelled:

* a score threshold: a pixel whose best cosine similarity is below it is background. ``"auto"`` is the
  cosine at which the model's own sigmoid calibration (``logit_scale``, ``logit_bias``) says 50 %
  match; a float sets it; ``None`` switches it off (pure argmax);
* explicit background labels (``"sky"``, ``"wall"``...): they compete in the argmax and the pixels
  they win are background.

Optionally the upsampled score maps are refined with a guided filter steered by the image, which snaps
the blurry patch-scale boundaries to image edges.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .dense import DenseFeatures, dense_features_batch
from .processing.image import load_image
from .prompts import LabelEncoder, check_labels

BACKGROUND = -1  # label-map value of pixels no label claims
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_UNSET = object()


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

    def summary(self) -> dict:
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
            "image_size": [height, width],
            "labels": list(self.labels),
            "background_labels": list(self.background_labels),
            "threshold": self.threshold,
            "background_area": int((self.label_map == BACKGROUND).sum()),
            "segments": segments,
        }


def mask_to_xyxy(mask: np.ndarray) -> np.ndarray:
    """The pixel box [x0, y0, x1, y1) of a non-empty mask (x1, y1 one past the last pixel)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


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
class Segmenter:
    """Open-vocabulary segmentation with an FG-CLIP 2 model.

    ``Segmenter(model, processor, tokenizer)`` or ``Segmenter.from_pretrained(name_or_path, device=...)``;
    then ``segment(image, ["电脑", "cat|猫"])``. Keyword settings are defaults that ``segment`` can
    override per call. :meth:`image_features` and :meth:`label_embeddings` are the two places that
    touch the model: override them to plug in another feature source.
    """

    def __init__(self, model, processor=None, tokenizer=None, max_num_patches: int | None = None,
                 threshold: float | str | None = "auto", background_labels: Sequence[str] = (),
                 templates: bool | Sequence[str] = False, refine: bool = False, refine_eps: float = 1e-3,
                 precision: str = "auto"):
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer
        self.max_num_patches = max_num_patches
        self.threshold = threshold
        self.background_labels = list(background_labels)
        self.templates = templates
        self.refine = refine
        self.refine_eps = refine_eps
        self.precision = precision
        self._encoder = None

    @classmethod
    def from_pretrained(cls, name_or_path, device=None, dtype=None, **kwargs) -> "Segmenter":
        """Model, image processor and tokenizer of a checkpoint folder or hub id."""
        from .model import FGCLIP2Model
        from .processing import FGCLIP2ImageProcessor, load_tokenizer

        model = FGCLIP2Model.from_pretrained(name_or_path, device=device, dtype=dtype)
        processor = FGCLIP2ImageProcessor.from_pretrained(name_or_path)
        return cls(model, processor, load_tokenizer(name_or_path), **kwargs)

    # ------------------------------------------------------------------ the two model-facing steps
    def image_features(self, images: Sequence) -> list[DenseFeatures]:
        """Dense features of RGB PIL images at this segmenter's patch budget."""
        return dense_features_batch(self.model, images, self.processor, self.max_num_patches,
                                    precision=self.precision)

    def label_embeddings(self, labels: Sequence[str], templates: bool | Sequence[str] = False) -> torch.Tensor:
        """(K, D) normalised ``box``-walk label embeddings (cached across calls)."""
        if self._encoder is None:
            if self.tokenizer is None:
                from .processing import load_tokenizer

                folder = getattr(self.model, "checkpoint_folder", None)
                if folder is None:
                    raise ValueError("Segmenter needs a tokenizer: pass one or use Segmenter.from_pretrained")
                self.tokenizer = load_tokenizer(folder)
            self._encoder = LabelEncoder(self.model, self.tokenizer, walk_type="box")
        return self._encoder(labels, templates)

    def auto_threshold(self) -> float | None:
        """The cosine where sigmoid(logit_scale.exp() * cos + logit_bias) = 0.5, the model's own match point."""
        scale, bias = getattr(self.model, "logit_scale", None), getattr(self.model, "logit_bias", None)
        if scale is None or bias is None:
            return None
        return float(-bias.detach().float().cpu() / scale.detach().float().exp().cpu())

    def resolve_threshold(self, threshold) -> float | None:
        if threshold == "auto":
            return self.auto_threshold()
        if threshold is None or threshold == "none":
            return None
        try:
            value = float(threshold)
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value):
            raise ValueError(f"threshold must be a finite number, 'auto' or None, got {threshold!r}")
        return value

    # ----------------------------------------------------------------------------------- segmenting
    def segment(self, image, labels: Sequence[str] | str, threshold=_UNSET, background_labels=_UNSET,
                templates=_UNSET, refine=_UNSET) -> SegmentationResult:
        """Segment one image (path, PIL image or array) into ``labels`` plus background."""
        return self.segment_batch([image], labels, threshold, background_labels, templates, refine)[0]

    def segment_batch(self, images: Sequence, labels: Sequence[str] | str, threshold=_UNSET,
                      background_labels=_UNSET, templates=_UNSET, refine=_UNSET) -> list[SegmentationResult]:
        """Segment several images with the same labels (one text encoding, one batched feature pass)."""
        threshold = self.resolve_threshold(self.threshold if threshold is _UNSET else threshold)
        background = list(self.background_labels if background_labels is _UNSET else background_labels)
        templates = self.templates if templates is _UNSET else templates
        refine = self.refine if refine is _UNSET else refine
        labels = check_labels(labels)
        # Checked together: a label that is also a background label is a mistake.
        check_labels(labels + background, "label (including background labels)")
        rgb = [load_image(im) for im in images]
        text = self.label_embeddings(labels + background, templates)
        feats = self.image_features(rgb)
        return [self._decide(f, im, text, labels, background, threshold, refine) for f, im in zip(feats, rgb)]

    def _decide(self, feats: DenseFeatures, image, text, labels, background, threshold, refine) -> SegmentationResult:
        scores = feats.upsample(feats.similarity(text)).cpu().numpy().astype(np.float32)
        if refine:
            guide = np.asarray(image.convert("L"), np.float32) / 255.0
            radius = max(1, int(round(max(feats.cell_size))))
            scores = guided_filter(guide, scores, radius, self.refine_eps)
        best = scores.argmax(0).astype(np.int32)
        label_map = np.where(best < len(labels), best, BACKGROUND).astype(np.int32)
        if threshold is not None:
            label_map[scores.max(0) < threshold] = BACKGROUND
        return SegmentationResult(list(labels), scores[: len(labels)], label_map, threshold, background)


# ------------------------------------------------------------------------------ files (the CLI's path)
def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Image paths, with folders expanded to the image files directly inside them (sorted).

    A path that does not exist, an empty folder, or a named file that is not an image raises
    ``ImageLoadError`` (checked on the file's header only, so it is cheap).
    """
    from PIL import Image, UnidentifiedImageError

    from .errors import ImageLoadError

    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ImageLoadError(f"image {path} does not exist")
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageLoadError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
            continue
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError) as err:
            raise ImageLoadError(f"{path} is not an image file ({err.__class__.__name__})") from None
        out.append(path)
    return out


def output_stems(paths: Sequence[Path]) -> list[str]:
    """One output name per image: its file stem, made unique (``x``, ``x-2``...) when stems repeat."""
    used: set[str] = set()
    stems = []
    for path in paths:
        stem, count = path.stem, 1
        while stem in used:  # also skips a name another image has as its own stem (x, x-2, x-2.jpg)
            count += 1
            stem = f"{path.stem}-{count}"
        used.add(stem)
        stems.append(stem)
    return stems


def check_output_folder(out_dir) -> Path:
    """``out_dir`` if it is (or can be created as) a writable folder, else ``OSError`` naming it."""
    import tempfile

    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise OSError(f"--out {out} is a file, not a folder")
        try:
            with tempfile.TemporaryFile(dir=out):
                pass
        except OSError:
            raise OSError(f"cannot write to the output folder {out}") from None
        return out
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OSError(f"cannot create the output folder {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"cannot create the output folder {out}: {parent} is not writable")
    return out


@dataclass
class FilesReport:
    """What :func:`segment_files` did: the outputs per image and the images it could not read."""

    written: dict[str, dict[str, Path]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def segment_files(segmenter: Segmenter, paths: Sequence[Path], labels: Sequence[str], out_dir,
                  font: str | None = None, progress: bool = True, extra_json: dict | None = None,
                  **segment_kwargs) -> FilesReport:
    """Segment image files and write, per image, the overlay, heatmap grid, label map and JSON.

    One image at a time, so one unreadable file is recorded in ``failed`` and the rest still run.
    Inputs should be checked first (``expand_inputs``, ``check_labels``, ``check_output_folder``).
    """
    from tqdm.auto import tqdm

    from .errors import ImageLoadError
    from .viz import write_outputs

    out = Path(out_dir)
    report = FilesReport()
    bar = tqdm(list(zip(paths, output_stems(paths))), desc="segmenting", unit="img", disable=not progress)
    for path, stem in bar:
        try:
            image = load_image(path)
        except ImageLoadError as err:
            report.failed[str(path)] = str(err)
            continue
        result = segmenter.segment(image, labels, **segment_kwargs)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"image": str(path), **(extra_json or {})}
        report.written[str(path)] = write_outputs(image, result, out, stem, font=font, extra_json=meta)
    return report


__all__ = [
    "BACKGROUND", "Segmenter", "SegmentationResult", "guided_filter", "mask_to_rle", "mask_to_xyxy",
    "expand_inputs", "check_output_folder", "segment_files", "FilesReport",
]
