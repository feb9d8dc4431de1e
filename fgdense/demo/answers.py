"""What a job hands the page: its files, a table and a status line; and :func:`guarded`, which turns any
failure into that one line.

The tables are built here from the results, so a tab shows what its JSON holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..cli import one_line
from ..errors import FGDenseError
from ..io.fonts import REPLACEMENT
from ..segment import BACKGROUND
from .fields import boxes_text

log = logging.getLogger(__name__)


@dataclass
class SegmentAnswer:
    overlay: Path
    heatmaps: Path
    label_map: Path
    json: Path
    table: list[list]
    message: str


@dataclass
class BoxesAnswer:
    picture: Path
    json: Path
    table: list[list]
    headers: list[str]
    message: str


@dataclass
class GroundAnswer:
    picture: Path
    heatmaps: Path
    json: Path
    table: list[list]
    message: str


@dataclass
class ExploreAnswer:
    picture: Path
    table: list[list] = field(default_factory=list)
    message: str = ""


def guarded(job: Callable, *args, **kwargs):
    """``(job's answer, "")``, or ``(None, "error: ...")``: one line for the page, never a traceback there.

    A user's mistake reads as its message; anything else is a fault of the demo, logged whole on the
    server, and the page says so in one line. Either way the server keeps serving.
    """
    try:
        return job(*args, **kwargs), ""
    except FGDenseError as err:
        return None, f"error: {one_line(err)}"
    except Exception as err:  # a bug must not take the page down: log it, tell the person in one line
        log.exception("demo job %s failed", getattr(job, "__name__", job))
        return None, f"error: unexpected {type(err).__name__}: {one_line(err)} (details in the server's log)"


def segment_table(result) -> list[list]:
    """Per label its share of the image, mean and max score; then the background's share."""
    total = float(result.label_map.size)
    table = [[label, f"{area / total:.1%}", score_text(mean), score_text(result.scores[k].max())]
             for k, (label, area, mean) in enumerate(zip(result.labels, result.areas(), result.mean_scores()))]
    table.append(["(background)", f"{(result.label_map == BACKGROUND).sum() / total:.1%}", "", ""])
    return table


def boxes_table(result, top_k: int) -> tuple[list[str], list[list]]:
    """(headers, rows): per box its corners and its top-k labels with their probabilities."""
    headers = ["box", "x1", "y1", "x2", "y2"] + [f"top {i + 1}" for i in range(top_k)]
    rows = []
    for i, (box, ranked) in enumerate(zip(result.boxes, result.top_k)):
        cells = [f"{result.labels[j]} ({result.probabilities[i, j]:.2f})" for j in ranked]
        rows.append([i + 1, *[round(float(v), 1) for v in box], *cells])
    return headers, rows


def ground_table(result) -> list[list]:
    """Per phrase its walk type, best box and score (blank where none was found)."""
    rows = []
    for p, phrase in enumerate(result.phrases):
        found = result.best_indices[p] >= 0
        box = boxes_text([result.best_boxes[p]])[1:-1] if found else ""
        rows.append([phrase, result.walk_types[p], box, score_text(result.best_scores[p]) if found else ""])
    return rows


def text_table(texts, grid_maps) -> list[list]:
    """Per text its lowest and highest patch cosine and where the highest is."""
    rows = []
    for text, grid_map in zip(texts, grid_maps):
        grid_map = np.asarray(grid_map)
        r, c = divmod(int(grid_map.argmax()), grid_map.shape[1])
        rows.append([text, score_text(grid_map.min()), score_text(grid_map.max()), f"row {r + 1}, column {c + 1}"])
    return rows


def score_text(value) -> str:
    return "" if value is None else f"{float(value):.3f}"


def glyph_note(lettering) -> str:
    """What the status line says when no font here draws some of the text."""
    if not lettering.missing:
        return ""
    return f"; no font here draws {lettering.missing!r}: the pictures show {REPLACEMENT} in their place"


__all__ = ["BoxesAnswer", "ExploreAnswer", "GroundAnswer", "SegmentAnswer", "boxes_table", "glyph_note", "ground_table",
           "guarded", "score_text", "segment_table", "text_table"]
