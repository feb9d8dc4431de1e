"""The page's text fields as the tools read their flags: labels, phrases and boxes, typed, clicked or loaded.

Each field is bounded (``MAX_TEXT_CHARS``, ``MAX_BOXES``) and checked as the tools check their inputs, so
a mistake is an :class:`~fgdense.errors.FGDenseError` naming it, which the page shows as one line.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ..errors import BoxError, LabelError
from ..io.inputs import parse_boxes
from ..prompts import check_labels, check_phrases

MAX_TEXT_CHARS = 4000  # per text field: hundreds of labels, far more than a picture can show
MAX_LABELS = 255  # the palette label map's limit
MAX_BOXES = 500

# Spaces that separate labels: the ASCII one and the ideographic one a Chinese keyboard types. Not tabs or
# other control characters: those stay inside a label, where the label check names them.
SPACE_CHARS = " \u3000"
SPACES = r"[ \u3000]+"


def split_labels(text: str | None, what: str = "label") -> list[str]:
    """The labels typed into one field: separated by commas or new lines when the text has any, else by
    spaces, so ``电脑 cat`` is two labels and ``red mug, 咖啡杯`` two more; ``cat|猫`` keeps its synonyms.
    Checked as the tools check them (none, blank, duplicates, control characters are errors)."""
    text = _field(text, what)
    # A tab or another control character is kept inside its label so the check below names it.
    parts = re.split(r"[,，\n]", text) if re.search(r"[,，\n]", text) else re.split(SPACES, text)
    labels = [part.strip(SPACE_CHARS) for part in parts if part.strip(SPACE_CHARS)]
    if not labels:
        raise LabelError(f"type at least one {what} (separated by spaces, or by commas to keep spaces inside one)")
    return check_labels(labels, what)


def split_phrases(text: str | None) -> list[str]:
    """The phrases typed into one field, one a line (a phrase may hold spaces and commas)."""
    text = _field(text, "phrase")
    phrases = [line.strip(SPACE_CHARS) for line in text.split("\n") if line.strip(SPACE_CHARS)]
    if not phrases:
        raise LabelError("type at least one phrase (one a line)")
    return check_phrases(phrases)


def _field(text: str | None, what: str) -> str:
    text = (text or "").replace("\r\n", "\n")
    if len(text) > MAX_TEXT_CHARS:
        raise LabelError(f"the {what} field holds {len(text)} characters; at most {MAX_TEXT_CHARS}")
    return text


def boxes_from_text(text: str | None, required: bool = True) -> np.ndarray | None:
    """Boxes typed (or drawn, or loaded) into the boxes field: JSON in any form ``tools/classify_boxes.py``
    reads. Blank is an error when ``required``, else None (grounding then proposes boxes)."""
    text = (text or "").strip()
    if not text:
        if required:
            raise BoxError("give at least one box: click two corners on the picture, type "
                           "[[x1, y1, x2, y2], ...] or load a boxes JSON file")
        return None
    if len(text) > MAX_TEXT_CHARS * 10:
        raise BoxError(f"the boxes field holds {len(text)} characters; at most {MAX_TEXT_CHARS * 10}")
    boxes = parse_boxes(text, "the boxes field")
    if len(boxes) > MAX_BOXES:
        raise BoxError(f"{len(boxes)} boxes given; the demo takes at most {MAX_BOXES}")
    if required and not len(boxes):
        raise BoxError("the boxes field holds no box: give at least one [x1, y1, x2, y2]")
    return boxes


def boxes_text(boxes) -> str:
    """Boxes as the JSON the boxes field holds (whole pixels where they are whole)."""
    rows = [[int(v) if float(v).is_integer() else round(float(v), 1) for v in box] for box in np.asarray(boxes)]
    return json.dumps(rows)


def add_corner(pending: tuple[float, float] | None, x: float, y: float, text: str | None):
    """A click on the picture while drawing boxes: the first click of a pair keeps its point, the second
    adds the box between the two to the boxes field. Returns (pending point, boxes text, message)."""
    x, y = float(x), float(y)
    if pending is None:
        return (x, y), text or "", f"first corner at ({x:.0f}, {y:.0f}): now click the opposite corner"
    (x0, y0), (x1, y1) = pending, (x, y)
    box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
    if box[0] == box[2] or box[1] == box[3]:
        return None, text or "", "the two corners make a box of zero area: click two opposite corners"
    current = boxes_from_text(text, required=False)
    current = np.zeros((0, 4)) if current is None else current
    if len(current) >= MAX_BOXES:
        raise BoxError(f"the demo takes at most {MAX_BOXES} boxes")
    rows = np.concatenate([current, [box]])
    return None, boxes_text(rows), f"box {len(rows)} added: {boxes_text([box])[1:-1]}"


__all__ = ["MAX_BOXES", "MAX_LABELS", "MAX_TEXT_CHARS", "add_corner", "boxes_from_text", "boxes_text", "split_labels",
           "split_phrases"]
