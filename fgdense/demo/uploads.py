"""What a person uploads, read under the demo's limits: images and boxes files.

A server on a network takes files from strangers: an upload beyond ``MAX_UPLOAD_BYTES``, or an image
beyond ``MAX_PIXELS`` (read from its header, before it is decoded), is refused in one line naming the
file by the name the person knows it by, never by the server's temporary copy.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from PIL import Image

from ..errors import BoxError, ImageLoadError
from ..io.inputs import read_boxes_file
from ..processing.image import load_image
from .fields import MAX_BOXES, boxes_text

MAX_UPLOAD_BYTES = 40 * 2**20  # a phone photo is 3-12 MB; beyond this an upload is a mistake or an attack
MAX_PIXELS = 40_000_000  # decoded RGB at 40 MP is 120 MB; dense features never need more than 2048x2048
KEEP_IMAGES = 4  # decoded uploads kept: the four tabs usually show one photo


class Uploads:
    """Uploaded images (the last ``KEEP_IMAGES`` decoded kept, keyed by file, size and time) and boxes files."""

    def __init__(self, max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS):
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self._lock = threading.Lock()  # the page checks uploads outside the jobs' lock
        self._images: dict[tuple, Image.Image] = {}

    def image(self, path) -> Image.Image:
        """The uploaded image at ``path`` as RGB (EXIF rotation applied), after the size limits."""
        need_image(path)
        path = Path(path)
        name = path.name
        try:
            stat = path.stat()
        except OSError:
            raise ImageLoadError(f"the uploaded image {name} is gone; upload it again") from None
        if stat.st_size > self.max_upload_bytes:
            raise ImageLoadError(f"the image {name} is {size_text(stat.st_size)}; the demo takes images up to "
                                 f"{size_text(self.max_upload_bytes)}")
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._images:
                return self._images[key]
        try:
            with Image.open(path) as header:  # the size is in the header: refuse a huge image before decoding it
                width, height = header.size
        except Exception:
            width = height = 0  # not readable as an image: load_image below says so
        if width * height > self.max_pixels:
            raise ImageLoadError(f"the image {name} is {width}x{height} pixels; the demo takes images up to "
                                 f"{self.max_pixels / 1e6:g} megapixels")
        try:
            image = load_image(path)
        except ImageLoadError as err:
            # The message names the server's temporary copy; the person knows the file by its name.
            raise ImageLoadError(str(err).replace(str(path), name)) from None
        with self._lock:
            if len(self._images) >= KEEP_IMAGES:
                self._images.pop(next(iter(self._images)))
            self._images[key] = image
        return image

    def boxes_file(self, path) -> str:
        """A boxes JSON file (as ``tools/classify_boxes.py`` reads it) as the text of the boxes field."""
        if not path:
            return ""
        if Path(path).stat().st_size > self.max_upload_bytes:
            raise BoxError(f"the boxes file {Path(path).name} is too large")
        try:
            boxes = read_boxes_file(path)
        except BoxError as err:
            raise BoxError(str(err).replace(str(path), Path(path).name)) from None
        if len(boxes) > MAX_BOXES:
            raise BoxError(f"{len(boxes)} boxes given; the demo takes at most {MAX_BOXES}")
        return boxes_text(boxes)


def need_image(path) -> None:
    if path is None or path == "":
        raise ImageLoadError("upload an image first")


def file_stem(path) -> str:
    """A safe file stem from the uploaded file's name."""
    stem = re.sub(r"[^\w.-]+", "_", Path(str(path)).stem).strip("._")
    return stem[:60] or "image"


def size_text(count: int) -> str:
    """A byte count for people: ``31 KB``, ``12.3 MB``."""
    return f"{count / 2**20:.1f} MB" if count >= 2**20 else f"{max(1, round(count / 2**10))} KB"


__all__ = ["MAX_PIXELS", "MAX_UPLOAD_BYTES", "Uploads", "file_stem", "need_image", "size_text"]
