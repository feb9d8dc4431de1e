"""COCO segmentations (polygons or RLE) as training needs them: mirrored and cropped with their image,
and averaged onto an image's patch grid."""

from __future__ import annotations

import numpy as np


def flip_segmentation(segmentation, image_size: tuple[int, int], axis: int):
    """A COCO segmentation mirrored left-right (``axis`` 0) or upside down (1) in its image."""
    if segmentation is None:
        return None
    extent = image_size[axis]
    if isinstance(segmentation, list):
        return [[extent - v if k % 2 == axis else v for k, v in enumerate(poly)] for poly in segmentation]
    full = _decode(segmentation)
    return _encode(full[:, ::-1] if axis == 0 else full[::-1])


def crop_segmentation(segmentation, image_size: tuple[int, int], window: tuple[int, int, int, int]):
    """A COCO segmentation in the pixels of a window (x1, y1, x2, y2) cut out of its image."""
    if segmentation is None:
        return None
    x1, y1, x2, y2 = window
    if isinstance(segmentation, list):  # polygons: shifted; rasterising clips them to the window
        return [[v - (x1 if k % 2 == 0 else y1) for k, v in enumerate(poly)] for poly in segmentation]
    return _encode(_decode(segmentation)[y1:y2, x1:x2])


def _decode(rle: dict) -> np.ndarray:
    """The (H, W) 0/1 mask of a COCO RLE (compressed, or uncompressed with a list of counts)."""
    from pycocotools import mask as mask_utils

    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    return mask_utils.decode(rle)


def _encode(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def mask_on_grid(segmentation, image_size: tuple[int, int], grid_hw: tuple[int, int], supersample: int = 4) -> np.ndarray:
    """The fraction of each patch-grid cell (h, w) that a COCO segmentation covers.

    ``segmentation`` is COCO polygons (a list of flat ``[x1, y1, x2, y2, ...]`` lists) or RLE (a dict
    with ``counts`` and ``size``) in the pixels of an image of ``image_size`` (width, height); the
    processor resizes the whole image onto the grid, so coordinates scale linearly. Polygons are
    rasterised at ``supersample`` x the grid and averaged; RLE masks are decoded and area-resized.
    """
    import cv2
    from pycocotools import mask as mask_utils

    width, height = image_size
    grid_h, grid_w = grid_hw
    if isinstance(segmentation, list):
        fine_h, fine_w = grid_h * supersample, grid_w * supersample
        sx, sy = fine_w / width, fine_h / height
        polygons = [[v * (sx if k % 2 == 0 else sy) for k, v in enumerate(poly)] for poly in segmentation
                    if len(poly) >= 6]
        if not polygons:
            return np.zeros((grid_h, grid_w), np.float32)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, fine_h, fine_w))
        fine = mask_utils.decode(rle).astype(np.float32)
        return fine.reshape(grid_h, supersample, grid_w, supersample).mean(axis=(1, 3))
    rle = segmentation
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    full = mask_utils.decode(rle).astype(np.float32)
    return cv2.resize(full, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
