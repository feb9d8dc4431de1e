"""Pictures of labelled boxes: supervision's box and label annotators with a font that draws Chinese."""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import supervision as sv
from PIL import Image

from .fonts import load_font
from .files import write_all, write_text
from .processing import load_image


def draw_boxes(image, detections: sv.Detections, labels: Sequence[str], font: str | None = None,
               font_size: int | None = None) -> Image.Image:
    """A copy of ``image`` with each detection's box and its label text drawn.

    Colours follow ``class_id`` (one colour per label) when the detections have it. The font is the
    first installed one with a glyph for every character of the labels (see :func:`fgdense.fonts.load_font`),
    or ``font`` if given; a missing glyph raises :class:`fgdense.fonts.FontError` rather than drawing boxes.
    """
    labels = [str(label) for label in labels]
    if len(labels) != len(detections):
        raise ValueError(f"need one label per box: {len(detections)} boxes, {len(labels)} labels")
    scene = load_image(image).copy()
    if len(detections) == 0:
        return scene
    size = font_size or max(12, round(min(scene.size) / 30))
    font_path = load_font("".join(labels), size, font).path
    lookup = sv.ColorLookup.CLASS if detections.class_id is not None else sv.ColorLookup.INDEX
    thickness = max(1, round(min(scene.size) / 200))
    scene = sv.BoxAnnotator(thickness=thickness, color_lookup=lookup).annotate(scene, detections)
    labeller = sv.RichLabelAnnotator(font_path=font_path, font_size=size, text_padding=max(2, size // 4),
                                     color_lookup=lookup, smart_position=True)
    return labeller.annotate(scene, detections, labels=labels)


def score_labels(names: Sequence[str], scores: Sequence[float]) -> list[str]:
    """``"name 0.87"`` captions."""
    return [f"{name} {float(score):.2f}" for name, score in zip(names, np.asarray(scores).tolist())]



def write_outputs(json_path, payload: dict, png_path=None, picture: Image.Image | None = None) -> None:
    """Write the JSON result (and the picture), both or neither (see :func:`fgdense.viz.write_all`)."""
    writes = [(json_path, write_text(json.dumps(payload, ensure_ascii=False, indent=2)))]
    if png_path is not None and picture is not None:
        writes.append((png_path, lambda tmp: picture.save(tmp, format="PNG")))
    write_all(writes)
