"""Thumbnails for the pictures that show many images at once (an evaluation's worst cases, a search's
answers): one size for all, a box drawn on when asked, a grey square for an image that cannot be read."""

from __future__ import annotations

from PIL import Image, ImageDraw

from ..errors import ImageLoadError
from ..processing.image import decode_as_stored, load_image

BOX_COLOUR = (255, 40, 40)


def thumbnail(path, size: int, xyxy=None, as_stored: bool = False) -> Image.Image:
    """The image at ``path`` scaled so its longer side is ``size`` pixels (small images grow, large ones
    shrink), with the box ``xyxy`` (pixels of the image) drawn on it when given. ``as_stored``: the pixels
    as stored, no EXIF rotation (dataset boxes refer to those). A path that is None, missing or unreadable
    gives a grey square: a picture is a view and never stops for one image."""
    image = _opened(path, as_stored)
    if image is None:
        return Image.new("RGB", (size, size), (90, 90, 90))
    scale = size / max(image.width, image.height)
    thumb = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    if xyxy is not None:
        ImageDraw.Draw(thumb).rectangle([v * scale for v in xyxy], outline=BOX_COLOUR, width=3)
    return thumb


def _opened(path, as_stored: bool) -> Image.Image | None:
    if path is None:  # a name leading outside its images folder is never opened
        return None
    try:
        return Image.fromarray(decode_as_stored(path)) if as_stored else load_image(path)
    except ImageLoadError:
        return None


__all__ = ["thumbnail"]
