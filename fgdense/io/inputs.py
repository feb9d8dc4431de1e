"""What the tools read besides the images themselves (see :mod:`fgdense.io.sources`): boxes files and
typed boxes, label lists, which file names are images.

Every problem is an :class:`~fgdense.errors.FGDenseError` naming the input, found before any model work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import BoxError, LabelError

# File suffixes taken as images when a folder is expanded (anything PIL reads; others are ignored).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


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


def tool_labels(labels, labels_file=None) -> list[str]:
    """A labelling tool's labels: ``--labels`` then the lines of ``--labels-file``, checked; a
    :class:`LabelError` when there are none."""
    from ..labels import check_labels

    found = list(labels or []) + (read_lines_file(labels_file) if labels_file else [])
    if not found:
        raise LabelError("give at least one label: --labels L1 L2 ... or --labels-file FILE")
    return check_labels(found)


__all__ = ["IMAGE_SUFFIXES", "is_image_name", "parse_boxes", "read_boxes_file", "read_lines_file", "tool_labels"]
