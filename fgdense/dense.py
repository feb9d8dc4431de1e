"""High-resolution dense features: patch-feature grids for whole images, fast and memory-lean.

The patch budget (``max_num_patches``) means the same everywhere in fgdense:

* ``None``: the checkpoint's own processing, each image alone (with the released checkpoints, the
  dynamic budget of 128 to 1024 patches picked from the image's size), as the official evaluations;
* ``"auto"``: a high resolution for the device, 16384 patches on a GPU (FG-CLIP 2's dense demo) and
  1024 on a CPU;
* an integer from 1 to 16384: that budget for every image.

The fast path runs each image at its own patch count with no padding at all, so neither the vision
tower nor the dense head needs an attention mask and SDPA picks its flash / memory-efficient / fused
CPU kernel. Real patches never attend to padding in the official model, so their features are the
same as the padded official computation's (tested). Images of equal patch count are batched together,
up to a token budget per forward pass, so memory stays bounded whatever the mix of sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import CPU_DEFAULT_PATCHES, GPU_DEFAULT_PATCHES, check_budget
from .devices import autocast
from .model.boxes import project_boxes, roi_embeddings, validate_boxes
from .model.heads import dense_head_forward
from .processing.image import load_image
from .processing.processor import image_processor_for


@dataclass
class DenseFeatures:
    """One image's dense features and how its grid maps onto the image.

    ``grid`` is (h, w, D) float32, not normalised; cell (i, j) covers image pixels
    ``y in [i * cell_h, (i+1) * cell_h)``, ``x in [j * cell_w, (j+1) * cell_w)`` of the original
    (height, width) ``image_size``.
    """

    grid: torch.Tensor
    image_size: tuple[int, int]

    @property
    def grid_size(self) -> tuple[int, int]:
        return int(self.grid.shape[0]), int(self.grid.shape[1])

    @property
    def cell_size(self) -> tuple[float, float]:
        """(height, width) in original-image pixels of one grid cell."""
        (h, w), (height, width) = self.grid_size, self.image_size
        return height / h, width / w

    def normalized(self) -> torch.Tensor:
        return F.normalize(self.grid, dim=-1)

    def boxes_to_grid(self, boxes) -> torch.Tensor:
        """xyxy boxes in image pixels -> grid units (validated and clipped, see ``validate_boxes``)."""
        return project_boxes(validate_boxes(boxes, self.image_size), self.image_size, self.grid_size)

    def region_embeddings(self, boxes) -> torch.Tensor:
        """RoIAlign 1x1 region embeddings (N, D) of xyxy pixel boxes, not normalised (official pooling)."""
        return roi_embeddings(self.grid, self.boxes_to_grid(boxes))

    def mask_embeddings(self, masks) -> torch.Tensor:
        """(N, D) averages of the features under (N, H, W) boolean image masks, not normalised: each mask
        is area-resized onto the grid and every cell weighed by the share of it the mask covers (a mask
        that vanishes in the resize takes the cell under its centre)."""
        import cv2

        (h, w), (cell_h, cell_w) = self.grid_size, self.cell_size
        masks = np.asarray(masks, dtype=bool)
        weights = np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) for m in masks]) \
            if len(masks) else np.zeros((0, h, w), np.float32)
        for i in np.flatnonzero(weights.reshape(len(weights), -1).sum(1) <= 0):
            ys, xs = np.nonzero(masks[i])
            if len(ys):
                weights[i, min(int(ys.mean() // cell_h), h - 1), min(int(xs.mean() // cell_w), w - 1)] = 1.0
        weights = torch.from_numpy(weights).to(self.grid.device)
        pooled = torch.einsum("nhw,hwd->nd", weights, self.grid.float())
        return pooled / weights.sum((1, 2)).clamp(min=1e-12)[:, None]

    def similarity(self, text_embeds: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (K, h, w) of every cell to each of K text embeddings."""
        text = F.normalize(text_embeds.to(self.grid.device, torch.float32), dim=-1)
        return torch.einsum("hwd,kd->khw", self.normalized(), text)

    def upsample(self, maps: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Bilinearly resize (K, h, w) grid maps to (K, H, W) image pixels (or ``size``)."""
        size = tuple(size or self.image_size)
        return F.interpolate(maps[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def pick_patch_budget(height: int, width: int, max_patches: int = GPU_DEFAULT_PATCHES, patch_size: int = 16,
                      short_edge: int = 2048) -> int:
    """The patch budget for an image, as the official dense demo picks its resolution.

    The demo resizes the short edge to ``short_edge`` pixels; the budget is that size's patch count,
    capped at ``max_patches``. The short edge grows with a cap above (short_edge / patch_size)^2, so a
    budget asked for is always reachable: in practice the result is ``max_patches`` for any image, and
    smaller only when ``short_edge`` is lowered below what the cap needs.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if short_edge >= 2048:
        short_edge = max(short_edge, patch_size * math.ceil(math.sqrt(max_patches)))
    scale = short_edge / min(height, width)
    native = max(1, round(height * scale) // patch_size) * max(1, round(width * scale) // patch_size)
    return int(min(max_patches, native))


def default_patch_budget(device: torch.device | str) -> int:
    """16384 patches on a GPU, a CPU-friendly 1024 on a CPU."""
    return GPU_DEFAULT_PATCHES if torch.device(device).type == "cuda" else CPU_DEFAULT_PATCHES


@torch.no_grad()
def dense_grids(model, pixel_values, spatial_shapes, max_batch_tokens: int = GPU_DEFAULT_PATCHES,
                precision: str = "auto") -> list[torch.Tensor]:
    """(h, w, D) float32 dense grids of processed images, computed without padding or masks.

    Equivalent to ``model.get_image_dense_feature`` on each image's real rows (NaFlex puts padding
    after them, so they are the first h*w rows). Images with the same patch count run together, at
    most ``max_batch_tokens`` tokens per forward pass.
    """
    device = model.device
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    grids: list[torch.Tensor | None] = [None] * len(shapes)
    by_length: dict[int, list[int]] = {}
    for index, (h, w) in enumerate(shapes):
        by_length.setdefault(h * w, []).append(index)
    with autocast(model, precision):
        for length, indices in by_length.items():
            per_pass = max(1, max_batch_tokens // length)
            for start in range(0, len(indices), per_pass):
                chunk = indices[start : start + per_pass]
                values = pixel_values[chunk, :length].to(device)
                ones = torch.ones(values.shape[:2], dtype=torch.long, device=device)
                hidden = model.vision_hidden_states(values, ones, spatial_shapes[chunk].to(device))
                dense = dense_head_forward(model.dense_feature_head, hidden, None).float()
                for row, index in enumerate(chunk):
                    grids[index] = dense[row].reshape(*shapes[index], -1)
    return grids


def budget_setting(value) -> int | str | None:
    """A ``max_num_patches`` setting checked: ``None``, ``"auto"`` or an int from 1 to 16384."""
    if value is None or value == "auto":
        return value
    return check_budget(value)


def resolve_budget(value, device) -> int | None:
    """The cap a ``max_num_patches`` setting means on ``device`` (``None``: the checkpoint's processing)."""
    value = budget_setting(value)
    return default_patch_budget(device) if value == "auto" else value


@dataclass
class ProcessedImage:
    """An image made ready for the dense pass where that is cheap to do (a DataLoader worker, say).

    ``image`` is the RGB image (pictures, box checks and the guided filter need it), ``pixel_values``
    its real patch rows (h*w, 3*patch*patch), ``spatial_shape`` (h, w), and ``budget`` the patch cap it
    was processed at (None: the processor's own choice). Tasks and :func:`dense_features_batch` take it
    wherever they take an image; one processed at another budget than asked for is processed again.
    """

    image: Image.Image
    pixel_values: torch.Tensor
    spatial_shape: torch.Tensor
    budget: int | None

    @property
    def patches(self) -> int:
        return int(self.pixel_values.shape[0])


def process_image(processor, image, cap: int | None) -> ProcessedImage:
    """Decode (if needed) and process one image for the dense pass at patch cap ``cap`` (see
    :func:`dense_features_batch`); runs on the CPU and touches no model."""
    rgb = load_image(image.image if isinstance(image, ProcessedImage) else image)
    processor = image_processor_for(processor=processor)
    if cap is None:
        inputs = processor(rgb)
    else:
        budget = pick_patch_budget(rgb.height, rgb.width, cap, processor.patch_size)
        inputs = processor(rgb, max_num_patches=budget, dynamic_max_patches=False)
    h, w = (int(v) for v in inputs["spatial_shapes"][0])
    return ProcessedImage(rgb, inputs["pixel_values"][0, : h * w], inputs["spatial_shapes"][0], cap)


def rgb_of(image) -> Image.Image:
    """The RGB image of anything a task takes as an image (a path, PIL image, array or ProcessedImage)."""
    return image.image if isinstance(image, ProcessedImage) else load_image(image)


def loaded(image):
    """``image`` decoded once: a ProcessedImage as it is, anything else as an RGB PIL image."""
    return image if isinstance(image, ProcessedImage) else load_image(image)


def dense_features_batch(model, images: Iterable, processor=None, max_num_patches: int | str | None = "auto",
                         max_batch_tokens: int | None = None, precision: str = "auto") -> list[DenseFeatures]:
    """Dense features of several images (paths, PIL images, arrays or :class:`ProcessedImage`), each processed alone.

    ``max_num_patches`` is a budget setting (see the module docstring): with a number (or ``"auto"``'s)
    each image gets :func:`pick_patch_budget` of its size under that cap, honoured exactly (the
    processor's dynamic budget is switched off); with ``None``, the processor's own choice. ``processor``
    defaults to the model's checkpoint's own.
    """
    processor = image_processor_for(model, processor)
    cap = resolve_budget(max_num_patches, model.device)
    ready = [image if isinstance(image, ProcessedImage) and image.budget == cap else process_image(processor, image, cap)
             for image in images]
    tokens = max_batch_tokens or max(cap or 0, GPU_DEFAULT_PATCHES)
    return features_of_ready(model, ready, tokens, precision)


def features_of_ready(model, ready: list[ProcessedImage], max_batch_tokens: int = GPU_DEFAULT_PATCHES,
                      precision: str = "auto") -> list[DenseFeatures]:
    """DenseFeatures of processed images: their real patch rows go into one :func:`dense_grids` call."""
    if not ready:
        return []
    width = max(r.patches for r in ready)
    values = torch.stack([F.pad(r.pixel_values, (0, 0, 0, width - r.patches)) for r in ready])
    shapes = torch.stack([r.spatial_shape for r in ready])
    grids = dense_grids(model, values, shapes, max_batch_tokens, precision)
    return [DenseFeatures(grid, (r.image.height, r.image.width)) for grid, r in zip(grids, ready)]


def dense_features(model, image, processor=None, max_num_patches: int | str | None = "auto",
                   precision: str = "auto") -> DenseFeatures:
    """Dense features of one image: its (h, w, D) grid and how grid cells map to image pixels."""
    return dense_features_batch(model, [image], processor, max_num_patches, precision=precision)[0]


__all__ = [
    "DenseFeatures", "ProcessedImage", "budget_setting", "default_patch_budget", "dense_features", "dense_features_batch",
    "dense_grids", "features_of_ready", "loaded", "pick_patch_budget",
    "process_image", "resolve_budget", "rgb_of",
]
