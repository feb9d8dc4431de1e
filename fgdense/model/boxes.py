"""Boxes in original-image pixels -> RoIAlign region embeddings on a patch grid."""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.ops import roi_align

from ..errors import BoxError


# Coordinates past this are no box of any image (and past float32's range, 1e300 would turn into inf in a
# result's boxes); partly-outside boxes within it are clipped to the image.
MAX_COORDINATE = 1e7


def validate_boxes(boxes, image_size: tuple[int, int], what: str = "box") -> torch.Tensor:
    """Check xyxy boxes against an image of (height, width) and clip them to it.

    A box partly outside the image is clipped to the image; a box with NaN/inf coordinates,
    inverted corners, zero area, or lying entirely outside the image raises :class:`BoxError`
    naming its index.
    """
    height, width = image_size
    tensor = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4) if len(boxes) else torch.zeros(0, 4, dtype=torch.float64)
    for index, (x1, y1, x2, y2) in enumerate(tensor.tolist()):
        if not all(map(_finite, (x1, y1, x2, y2))):
            raise BoxError(f"{what} {index} has a non-finite coordinate: {[x1, y1, x2, y2]}")
        if max(map(abs, (x1, y1, x2, y2))) > MAX_COORDINATE:
            raise BoxError(f"{what} {index} has a coordinate beyond {MAX_COORDINATE:.0e} pixels, past any image: "
                           f"{[x1, y1, x2, y2]}")
        if x2 < x1 or y2 < y1:
            raise BoxError(f"{what} {index} is inverted (x2 < x1 or y2 < y1): {[x1, y1, x2, y2]}")
        if x2 == x1 or y2 == y1:
            raise BoxError(f"{what} {index} has zero area: {[x1, y1, x2, y2]}")
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise BoxError(f"{what} {index} lies entirely outside the {width}x{height} image: {[x1, y1, x2, y2]}")
    clipped = tensor.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
    return clipped


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


def project_boxes(boxes: torch.Tensor, image_size: tuple[int, int], grid_hw: Sequence[int]) -> torch.Tensor:
    """Scale xyxy boxes from image pixels (height, width) to patch-grid units (h, w)."""
    img_h, img_w = image_size
    grid_h, grid_w = int(grid_hw[0]), int(grid_hw[1])
    scale = torch.tensor([grid_w / img_w, grid_h / img_h, grid_w / img_w, grid_h / img_h], dtype=torch.float64)
    return boxes.to(torch.float64) * scale


def roi_embeddings(grid: torch.Tensor, boxes_grid: torch.Tensor) -> torch.Tensor:
    """RoIAlign 1x1 (aligned, adaptive sampling) of a (h, w, D) feature grid at boxes in grid units."""
    if boxes_grid.shape[0] == 0:
        return grid.new_zeros(0, grid.shape[-1])
    feature_map = grid.permute(2, 0, 1).unsqueeze(0)
    rois = torch.cat([boxes_grid.new_zeros(len(boxes_grid), 1), boxes_grid], dim=1)
    rois = rois.to(device=feature_map.device, dtype=torch.float32)
    if feature_map.dtype != torch.float32:
        # roi_align's CPU kernel lacks half precision; pooling in fp32 is also what the official code does.
        return roi_align(feature_map.float(), rois, (1, 1), 1.0, -1, True)[..., 0, 0].to(grid.dtype)
    return roi_align(feature_map, rois, (1, 1), 1.0, -1, True)[..., 0, 0]
