"""What the tools read: image files and folders, boxes files, label lists; output names that never collide.

Every problem is an :class:`~fgdense.errors.FGDenseError` naming the input, found before any model work.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BoxError, ImageLoadError, LabelError

# File suffixes taken as images when a folder is expanded (anything PIL reads; others are ignored).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Image paths, with folders expanded to the image files directly inside them (sorted), each once.

    A path that does not exist, an empty folder, or a named file that is not an image raises
    :class:`ImageLoadError` (checked on the file's header only, so it is cheap). A file named twice
    (or reached twice, through a folder and by name) is kept once.
    """
    from PIL import Image, UnidentifiedImageError

    out: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            if path.is_symlink():
                raise ImageLoadError(f"image {path} is a broken (or looping) symbolic link")
            raise ImageLoadError(f"image {path} does not exist")
        if path.is_dir():
            found = []
            for p in sorted(path.iterdir()):
                if is_image_name(p) and p.is_file():
                    found.append(p)
                elif p.is_symlink() and not p.exists():
                    warnings.warn(f"skipping {p}: a broken or looping symbolic link", stacklevel=2)
            if not found:
                raise ImageLoadError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            for p in found:
                add(p)
            continue
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError) as err:
            raise ImageLoadError(f"{path} is not an image file ({err.__class__.__name__})") from None
        add(path)
    return out


def read_boxes_file(path) -> np.ndarray:
    """(N, 4) xyxy pixel boxes from a JSON file.

    Accepted: a list of ``[x1, y1, x2, y2]``; a list of objects with an ``"xyxy"`` entry; or an object
    whose ``"boxes"`` holds either (so the output of ``tools/classify_boxes.py`` can be read back).
    """
    path = Path(path)
    if not path.exists() or path.is_dir():  # exists(), not is_file(): pipes like <(...) are fine
        raise BoxError(f"boxes file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BoxError(f"boxes file {path} is not valid JSON: {err}") from None
    return parse_boxes(text, f"boxes file {path}")


def parse_boxes(text: str, source: str = "boxes") -> np.ndarray:
    """(N, 4) xyxy pixel boxes from JSON text in any form :func:`read_boxes_file` accepts.

    ``source`` names the text in error messages (a file, or boxes typed into a form).
    """
    try:
        value = json.loads(text)
    except ValueError as err:
        raise BoxError(f"{source} is not valid JSON: {err}") from None
    if isinstance(value, dict):
        value = value.get("boxes")
    if not isinstance(value, list):
        raise BoxError(f"{source}: expected a list of [x1, y1, x2, y2] boxes (or {{\"boxes\": [...]}})")
    rows = []
    for index, item in enumerate(value):
        box = item.get("xyxy") if isinstance(item, dict) else item
        if not (isinstance(box, list) and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise BoxError(f"{source}: box {index} is not [x1, y1, x2, y2] numbers: {item!r}"[:300])
        rows.append(box)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def read_lines_file(path, what: str = "labels file") -> list[str]:
    """The non-blank lines of a UTF-8 text file (labels, phrases, prompt templates)."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabelError(f"{what} {path} is not UTF-8 text") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


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


__all__ = ["IMAGE_SUFFIXES", "expand_inputs", "is_image_name", "output_stems", "parse_boxes", "read_boxes_file",
           "read_lines_file"]
