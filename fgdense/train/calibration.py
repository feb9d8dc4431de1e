"""A background threshold calibrated on the training data, stored with the exported checkpoint.

The segmenter calls a pixel background when its best cosine to the labels is below a threshold. A
released FG-CLIP 2 checkpoint carries no such number, so ``--threshold auto`` falls back to the model's
own sigmoid match point (``-logit_bias / exp(logit_scale)``). A model fine-tuned on data with masks
can do better: the masks say which pixels are objects, so the threshold that best separates masked
from unmasked pixels of the training images is measured, exactly as the segmenter scores them (the
category names as labels, its default patch budget), and written into the export's ``config.json``
(``background_threshold``), which ``--threshold auto`` then uses.

"Best separates" = the largest mean of the background IoU and the object IoU of the two-way split
(objects vs background): the same counting segmentation mIoU does, for the background decision alone.
"""

from __future__ import annotations

import numpy as np

from .segmentations import mask_on_grid

PIXELS_PER_IMAGE = 4096  # pixels sampled per image (seeded): enough for a threshold, cheap for big images


def best_threshold(scores: np.ndarray, masked: np.ndarray) -> float:
    """The cut of ``scores`` (best cosine per pixel) maximising the mean of object IoU and background IoU
    when pixels at or above it are objects; ``masked`` says which pixels are objects."""
    order = np.argsort(-scores, kind="stable")
    s, m = scores[order], masked[order].astype(np.int64)
    objects, total = int(m.sum()), len(m)
    tp = np.cumsum(m)  # cutting after position k: the first k+1 pixels are called objects
    called = np.arange(1, total + 1)
    fp = called - tp
    fn = objects - tp
    tn = total - called - fn
    mean_iou = 0.5 * (tp / np.maximum(tp + fp + fn, 1) + tn / np.maximum(tn + fn + fp, 1))
    # Only cut between distinct scores; the midpoint to the next score is the threshold.
    distinct = np.r_[s[:-1] > s[1:], True]
    k = int(np.flatnonzero(distinct)[np.argmax(mean_iou[distinct])])
    return float(s[k] if k + 1 == total else (s[k] + s[k + 1]) / 2)


def calibrate_background(segmenter, dataset, max_images: int = 200, seed: int = 0) -> dict | None:
    """The calibrated threshold of a model (``segmenter``: a :class:`~fgdense.segment.Segmenter` on it)
    over up to ``max_images`` images of a COCO-format ``dataset`` whose masks cover all their objects.

    Returns ``{"background_threshold", "images", "pixels", "object_fraction"}``, or None when the
    dataset has no such image.
    """
    from ..processing.image import decode_as_stored
    from PIL import Image

    images = [im for im in getattr(dataset, "images", []) if getattr(im, "complete", False)]
    if not images:
        return None
    rng = np.random.default_rng(seed)
    if len(images) > max_images:
        images = [images[i] for i in sorted(rng.choice(len(images), max_images, replace=False))]
    labels = [category.name for category in dataset.categories.values()]
    scores, masked = [], []
    for image in images:
        pixels = Image.fromarray(decode_as_stored(image.path))
        result = segmenter.segment(pixels, labels, threshold=None)
        best = result.scores.max(0)
        union = np.zeros(best.shape, bool)
        for segmentation in image.segmentations:
            union |= mask_on_grid(segmentation, (image.width, image.height), best.shape, supersample=1) > 0.5
        pick = rng.choice(best.size, min(best.size, PIXELS_PER_IMAGE), replace=False)
        scores.append(best.ravel()[pick])
        masked.append(union.ravel()[pick])
    scores, masked = np.concatenate(scores), np.concatenate(masked)
    return {"background_threshold": round(best_threshold(scores, masked), 6), "images": len(images),
            "pixels": int(len(scores)), "object_fraction": round(float(masked.mean()), 4)}


__all__ = ["best_threshold", "calibrate_background"]
