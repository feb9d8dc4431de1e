"""What the tools read besides the images themselves (see :mod:`fgdense.io.sources`): boxes files and
typed boxes, label lists, which file names are images.

Every problem is an :class:`~fgdense.errors.FGDenseError` naming the input, found before any model work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BoxError, LabelError
from ..jsontext import json_number, parse_json
from ..paths import missing_file_reason

# File suffixes taken as images when a folder is expanded (anything PIL reads; others are ignored).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# The most boxes one image takes from a boxes file or a JSONL manifest line (detectors give hundreds; LVIS
# keeps 300 a image): beyond it a file is refused (a manifest line is a bad file) before it is parsed.
MAX_BOXES_PER_IMAGE = 10_000


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_boxes_file(path) -> np.ndarray:
    """(N, 4) xyxy pixel boxes from a JSON file.

    Accepted: a list of ``[x1, y1, x2, y2]``; a list of objects with an ``"xyxy"`` entry; or an object
    whose ``"boxes"`` holds either (so the output of ``tools/classify_boxes.py`` can be read back).
    """
    path = Path(path)
    reason = missing_file_reason(path)  # regular files only: a pipe nobody writes to would wait forever
    if reason:
        raise BoxError(f"boxes file {path} {reason}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BoxError(f"boxes file {path} is not valid JSON: {err}") from None
    return parse_boxes(text, f"boxes file {path}")


def parse_boxes(text: str, source: str = "boxes") -> np.ndarray:
    """(N, 4) xyxy pixel boxes from JSON text in any form :func:`read_boxes_file` accepts.

    ``source`` names the text in error messages (a file, or boxes typed into a form). More than
    :data:`MAX_BOXES_PER_IMAGE` boxes are refused before the text is parsed.
    """
    if too_many_boxes(text):
        raise BoxError(f"{source} holds more than {MAX_BOXES_PER_IMAGE} boxes, the most one image takes")
    value = parse_json(text, source, BoxError)
    if isinstance(value, dict):
        value = value.get("boxes")
    if not isinstance(value, list):
        raise BoxError(f"{source}: expected a list of [x1, y1, x2, y2] boxes (or {{\"boxes\": [...]}})")
    rows = box_rows(value)
    if isinstance(rows, int):
        raise BoxError(f"{source}: box {rows} is not [x1, y1, x2, y2] numbers: {_shown(value[rows])}")
    return rows


def too_many_boxes(text: str) -> bool:
    """Whether JSON text may hold more boxes than one image takes: every box opens a bracket, so counting
    them (in C, no parsing) bounds the boxes before any Python list is built."""
    return text.count("[") > MAX_BOXES_PER_IMAGE + 1


def box_rows(boxes: list) -> np.ndarray | int:
    """(N, 4) float64 boxes from a list of ``[x1, y1, x2, y2]`` (or ``{"xyxy": [...]}``), or the index of the
    first entry that is not four numbers (a bool is not a number; nor is a 400-digit integer). NaN passes:
    box validation refuses it by name."""
    rows = []
    for index, item in enumerate(boxes):
        box = item.get("xyxy") if isinstance(item, dict) else item
        numbers = [json_number(v) for v in box] if isinstance(box, list) and len(box) == 4 else [None]
        if None in numbers:
            return index
        rows.append(numbers)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _shown(item) -> str:
    """A bad entry for a one-line message: its start only (it may be huge, or nested too deeply to repr)."""
    try:
        return repr(item)[:200]
    except RecursionError:
        return "(nested too deeply to show)"


def read_lines_file(path, what: str = "labels file") -> list[str]:
    """The non-blank lines of a UTF-8 text file (labels, phrases, prompt templates)."""
    path = Path(path)
    reason = missing_file_reason(path)
    if reason:
        raise LabelError(f"{what} {path} {reason}")
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


__all__ = ["IMAGE_SUFFIXES", "MAX_BOXES_PER_IMAGE", "box_rows", "is_image_name", "parse_boxes", "read_boxes_file",
           "read_lines_file", "too_many_boxes", "tool_labels"]
