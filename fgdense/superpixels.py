"""Image regions for segmentation by regions instead of pixels: superpixels, and scores averaged over them.

The dense map is coarse (one feature per 16-pixel patch) and bilinear upsampling blurs label edges.
Superpixels (SLIC, from scikit-image) follow colour edges; averaging every label's score map over each
superpixel and labelling the superpixel as a whole puts the label edges on image edges and removes
isolated wrong pixels. Given masks (a label image) are averaged the same way.
"""

from __future__ import annotations

import numpy as np

from .errors import FGDenseError

# About one superpixel per this many pixels (an 8x8 square): finer than a patch at every budget the
# tools use on small images, coarse enough to average out noise. Capped for large photographs.
PIXELS_PER_SUPERPIXEL = 64
MAX_SUPERPIXELS = 4000


def check_superpixels_available() -> None:
    """One clear error, at once, where scikit-image (SLIC) is not installed: checked when superpixel regions
    are asked for (a setting, a tool's flag), not per image after the model has loaded."""
    import importlib.util

    if importlib.util.find_spec("skimage") is None:
        raise FGDenseError("regions='superpixels' needs scikit-image: pip install scikit-image "
                           "(or use regions='objects' or 'pixels')")


def superpixels(image, pixels_per_region: int = PIXELS_PER_SUPERPIXEL) -> np.ndarray:
    """(H, W) int32 SLIC superpixel ids (0 ...) of an RGB PIL image or (H, W, 3) array.

    SLIC comes from scikit-image, which fgdense does not install (only this mode needs it): without it
    this is one clear error, not an import traceback.
    """
    try:
        from skimage.segmentation import slic
    except ImportError:
        raise FGDenseError("regions='superpixels' needs scikit-image: pip install scikit-image "
                           "(or use regions='objects' or 'pixels')") from None

    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    count = int(np.clip(rgb.shape[0] * rgb.shape[1] // pixels_per_region, 1, MAX_SUPERPIXELS))
    return slic(rgb, n_segments=count, compactness=10.0, start_label=0).astype(np.int32)


def region_average(scores: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(K, H, W) score maps with every pixel given its region's mean score (``regions``: (H, W) ids >= 0)."""
    ids = regions.ravel()
    _, inverse = np.unique(ids, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    flat = scores.reshape(len(scores), -1)
    means = np.stack([np.bincount(inverse, weights=row, minlength=len(counts)) / counts for row in flat])
    return means[:, inverse].reshape(scores.shape).astype(np.float32)


__all__ = ["MAX_SUPERPIXELS", "PIXELS_PER_SUPERPIXEL", "region_average", "superpixels"]
