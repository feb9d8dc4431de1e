"""NaFlex image processing: transformers' SigLIP 2 PIL processor plus FG-CLIP 2's dynamic patch budget.

``Siglip2ImageProcessorPil`` reproduces the official pixel values exactly. The official processor only
adds ``dynamic_max_patches``: the budget is picked per batch from the largest image's patch count
(128/256/576/784/1024). With that on, an explicit ``max_num_patches`` is replaced; we keep that
behaviour for compatibility but warn, because the official 16384-patch demo silently runs at 1024.

The resize is the one place where Pillow's own version shows: see :func:`resize_in_two_passes`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

from ..checkpoint import resolve_checkpoint
from ..config import check_budget
from ..errors import CheckpointError, ImageLoadError
from ..jsontext import read_json_file

# (patches above which, budget): the official dynamic buckets, largest first.
DYNAMIC_BUCKETS = ((784, 1024), (576, 784), (256, 576), (128, 256))
DYNAMIC_MIN_BUDGET = 128

_INIT_KEYS = (
    "do_resize", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
    "resample", "patch_size", "max_num_patches",
)


def dynamic_budget(height: int, width: int, patch_size: int = 16) -> int:
    """The official per-image patch budget: the bucket above the image's native patch count."""
    native = (width // patch_size) * (height // patch_size)
    for above, budget in DYNAMIC_BUCKETS:
        if native > above:
            return budget
    return DYNAMIC_MIN_BUDGET


_ORIENTATION = 0x0112  # the EXIF tag saying how a stored image is to be turned for display


def load_image(image: Any) -> Image.Image:
    """An RGB PIL image from a path, PIL image or HxW[xC] uint8 array.

    EXIF orientation is applied; transparency is composited onto white (as transformers'
    ``convert_to_rgb`` does); 16-bit and float greyscale are scaled to 8 bits; CMYK, palette and
    greyscale modes are converted. A missing or unreadable file raises :class:`ImageLoadError`.
    """
    if isinstance(image, (str, os.PathLike)):
        image = _read_file(image)
    if isinstance(image, np.ndarray):
        image = _array_to_pil(image)
    elif not isinstance(image, Image.Image):
        raise ImageLoadError(f"expected an image path, PIL image or numpy array, got {type(image).__name__}")
    elif image.getexif().get(_ORIENTATION, 1) != 1:
        # exif_transpose also drops the tag, so loading the result again does not turn it twice.
        image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def decode_as_stored(path) -> np.ndarray:
    """HxWx3 uint8 RGB pixels of an image file as stored: no EXIF rotation.

    For evaluation: dataset annotations (COCO boxes and masks, label PNGs) refer to the stored pixels,
    and the official evaluation opens images with a plain ``Image.open(...).convert("RGB")``.
    """
    return np.array(to_rgb(_read_file(path)))


def _read_file(path) -> Image.Image:
    """The decoded image of a file (with its metadata), or :class:`ImageLoadError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"image {path} does not exist")
    if path.is_dir():
        raise ImageLoadError(f"image {path} is a folder, not an image file")
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageLoadError(f"cannot read {path} as an image: {err}") from None


def _array_to_pil(array: np.ndarray) -> Image.Image:
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4)):
        if array.dtype != np.uint8:
            # Scale to 8 bits by the value range the type implies (as to_rgb does for 16-bit files).
            is_float = np.issubdtype(array.dtype, np.floating)
            top = 65535.0 if array.dtype == np.uint16 else _value_range(array.astype(np.float64), is_float)
            array = np.clip(array.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    raise ImageLoadError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {array.shape}")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; alpha is composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else _value_range(values, image.mode == "F")
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _value_range(values: np.ndarray, is_float: bool) -> float:
    """The white level of a 32-bit integer or float greyscale image, guessed from its values."""
    peak = float(values.max()) if values.size else 0.0
    for top in ((1.0,) if is_float else ()) + (255.0, 65535.0):
        if peak <= top:
            return top
    return peak


# Pillow filters resized in two separable passes (a horizontal and a vertical convolution, each rounded to
# 8 bits). NEAREST takes another path in Pillow, with no intermediate rounding.
_TWO_PASS_FILTERS = {int(f) for f in (Image.Resampling.BOX, Image.Resampling.BILINEAR, Image.Resampling.HAMMING,
                                      Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)}


def resize_in_two_passes(image: Image.Image, width: int, height: int, resample) -> Image.Image:
    """``image.resize((width, height), resample)`` with the passes in Pillow 13's order, under any Pillow.

    Pillow resizes in two passes and rounds to 8 bits between them, so the order shows in the pixels
    (one grey level here and there). Up to 12 it always ran the horizontal pass first; from 13 it runs the
    vertical pass first when the height shrinks by more than twice what the width does. The reference
    outputs of the official processor were made with Pillow 13, so that order is the faithful one: each
    pass is asked for alone (a one-pass resize is the same in every Pillow), in that order.
    """
    in_width, in_height = image.size
    if (in_height - height) > 0 and (in_height - height) > 2 * (in_width - width):
        return image.resize((in_width, height), resample).resize((width, height), resample)
    return image.resize((width, in_height), resample).resize((width, height), resample)


class FGCLIP2ImageProcessor(Siglip2ImageProcessorPil):
    """The official FG-CLIP 2 image processor's behaviour on transformers' SigLIP 2 PIL processor.

    ``processor(images, max_num_patches=None, dynamic_max_patches=None, return_tensors="pt")`` returns
    ``pixel_values`` (B, budget, 3*patch*patch), ``pixel_attention_mask`` (B, budget) and
    ``spatial_shapes`` (B, 2) as (rows, columns) of patches. ``images`` may be paths, PIL images or
    arrays, one or a list.
    """

    def __init__(self, dynamic_max_patches: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.dynamic_max_patches = dynamic_max_patches

    @classmethod
    def from_pretrained(cls, name_or_path, **overrides) -> "FGCLIP2ImageProcessor":
        folder = resolve_checkpoint(name_or_path)
        path = folder / "preprocessor_config.json"
        values: dict[str, Any] = {}
        if path.is_file():
            values = read_json_file(path, str(path), CheckpointError)
            if not isinstance(values, dict):
                raise CheckpointError(f"{path} does not hold a JSON object")
        kwargs = {k: values[k] for k in _INIT_KEYS if k in values}
        kwargs["dynamic_max_patches"] = bool(values.get("dynamic_max_patches", True))
        kwargs.update(overrides)
        return cls(**kwargs)

    def resize(self, image: np.ndarray, size, resample=None, **kwargs) -> np.ndarray:
        """transformers' PIL resize of a (C, H, W) uint8 image, with Pillow 13's pass order (see
        :func:`resize_in_two_passes`); anything else (float input, other size forms) is left to
        transformers."""
        resample = self.resample if resample is None else resample
        plain = getattr(size, "height", None) and getattr(size, "width", None) and not kwargs.get("reducing_gap")
        if not plain or image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3) \
                or int(resample) not in _TWO_PASS_FILTERS:
            return super().resize(image, size, resample=resample, **kwargs)
        pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0).squeeze(-1) if image.shape[0] == 1
                                                   else image.transpose(1, 2, 0)))
        out = np.asarray(resize_in_two_passes(pil, int(size.width), int(size.height), int(resample)))
        return (out[None] if out.ndim == 2 else out.transpose(2, 0, 1)).copy()

    def to_dict(self) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in _INIT_KEYS}
        values["resample"] = int(values["resample"])
        values.update(dynamic_max_patches=self.dynamic_max_patches, image_processor_type="Fgclip2ImageProcessor")
        return values

    def save_pretrained(self, folder) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(Path(folder) / "preprocessor_config.json", "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)

    def budget_for(self, images: Iterable[Image.Image], max_num_patches=None, dynamic_max_patches=None) -> int:
        """The patch budget a call would use for these (RGB PIL) images."""
        dynamic = self.dynamic_max_patches if dynamic_max_patches is None else dynamic_max_patches
        requested = self.max_num_patches if max_num_patches is None else check_budget(max_num_patches)
        if not dynamic:
            return requested
        budget = max(dynamic_budget(im.height, im.width, self.patch_size) for im in images)
        if max_num_patches is not None and budget != requested:
            warnings.warn(
                f"dynamic_max_patches is on, so the requested max_num_patches={requested} is replaced by "
                f"{budget} (the official behaviour); pass dynamic_max_patches=False to use {requested}",
                stacklevel=3,
            )
        return budget

    def __call__(self, images, max_num_patches=None, dynamic_max_patches=None, return_tensors="pt", **kwargs):
        return self.preprocess(images, max_num_patches=max_num_patches, dynamic_max_patches=dynamic_max_patches,
                               return_tensors=return_tensors, **kwargs)

    def preprocess(self, images, max_num_patches=None, dynamic_max_patches=None, return_tensors="pt", **kwargs):
        if images is None or (isinstance(images, (list, tuple)) and len(images) == 0):
            raise ImageLoadError("no images given")
        if not isinstance(images, (list, tuple)):
            images = [images]
        rgb = [load_image(im) for im in images]
        budget = check_budget(self.budget_for(rgb, max_num_patches, dynamic_max_patches))
        return super().preprocess(rgb, max_num_patches=budget, return_tensors=return_tensors, **kwargs)
