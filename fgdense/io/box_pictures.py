"""Pictures of labelled boxes: supervision's box and label annotators with a font that draws Chinese.

Drawing is linear in the number of boxes: every box is drawn, but captions only on the ``MAX_CAPTIONS``
most confident ones (a strip below the picture says how many were left out), and supervision's
label spreading, which compares every caption with every other, only up to ``SMART_POSITION_LIMIT``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import supervision as sv
from PIL import Image, ImageDraw

from .fonts import lettering_for
from .segment_pictures import MAX_LABEL_COLOURS, label_colours, text_colour_on, wrap_text

MAX_CAPTIONS = 300  # more captions than this hide the picture (and each one costs text layout)
CAPTION_CHARS = 40  # long phrases are shortened on pictures (tables and JSON keep them whole)
SMART_POSITION_LIMIT = 100  # spreading captions apart is quadratic: 100 captions take a fraction of a second


def _palettes() -> tuple[sv.ColorPalette, sv.ColorPalette]:
    """The segmentation pictures' label colours (distinct for 255 labels), and a readable text colour on each."""
    colours = label_colours(MAX_LABEL_COLOURS)
    return (sv.ColorPalette([sv.Color(*map(int, c)) for c in colours]),
            sv.ColorPalette([sv.Color(*text_colour_on(c)) for c in colours]))


def captioned(detections: sv.Detections, max_captions: int | None = MAX_CAPTIONS) -> np.ndarray:
    """Indices of the boxes :func:`draw_boxes` captions: all of them, or the ``max_captions`` most confident
    (the first ones when there are no confidences), least confident first so the best are drawn on top."""
    count = len(detections)
    if detections.confidence is None:
        order = np.arange(count)
    else:
        order = np.argsort(-np.asarray(detections.confidence, np.float64), kind="stable")
    if max_captions is not None:
        order = order[:max(0, max_captions)]
    return order[::-1]


def draw_boxes(image, detections: sv.Detections, labels: Sequence[str], font=None,
               font_size: int | None = None, max_captions: int | None = MAX_CAPTIONS) -> Image.Image:
    """A copy of ``image`` with each detection's box drawn, and its label text on at most ``max_captions``
    of them (the most confident; None: all). When some boxes go without a caption, a strip below the
    picture says how many (the picture is then taller than the image).

    Colours follow ``class_id`` (label k has the segmentation pictures' colour k) when the detections have
    it, else the box's index. ``font`` is a :class:`~fgdense.io.fonts.Lettering`, a font path, or None (see
    :func:`fgdense.io.fonts.choose_font`); characters it cannot draw show as U+FFFD.
    """
    labels = [str(label) for label in labels]
    if len(labels) != len(detections):
        raise ValueError(f"need one label per box: {len(detections)} boxes, {len(labels)} labels")
    from ..processing.image import load_image  # transformers: imported when a picture is drawn, not before

    scene = load_image(image).copy()
    if len(detections) == 0:
        return scene
    size = font_size or max(12, round(min(scene.size) / 30))
    lettering = lettering_for(font, labels)
    colour_of = np.arange(len(detections)) if detections.class_id is None else np.asarray(detections.class_id)
    colours, text_colours = _palettes()
    thickness = max(1, round(min(scene.size) / 200))
    scene = sv.BoxAnnotator(color=colours, thickness=thickness).annotate(scene, detections,
                                                                          custom_color_lookup=colour_of)
    chosen = captioned(detections, max_captions)
    if len(chosen):
        labeller = sv.RichLabelAnnotator(color=colours, text_color=text_colours, font_path=lettering.path,
                                         font_size=size, text_padding=max(2, size // 4),
                                         smart_position=len(chosen) <= SMART_POSITION_LIMIT)
        scene = labeller.annotate(scene, detections[chosen], labels=[lettering.drawable(labels[i]) for i in chosen],
                                  custom_color_lookup=colour_of[chosen])
    if len(chosen) < len(detections):
        what = "most confident" if detections.confidence is not None else "first"
        scene = _with_foot_note(scene, f"captions on the {len(chosen)} {what} of {len(detections)} boxes",
                                lettering, size)
    return scene


def _with_foot_note(scene: Image.Image, text: str, lettering, size: int) -> Image.Image:
    """``scene`` with a strip below it saying ``text`` (wrapped to its width): below, so it hides no box."""
    face = lettering.font(size)
    pad = max(2, size // 4)
    ascent, descent = face.getmetrics()
    lines = wrap_text(lettering.drawable(text), face, scene.width - 2 * pad)
    canvas = Image.new("RGB", (scene.width, scene.height + len(lines) * (ascent + descent) + 2 * pad), (0, 0, 0))
    canvas.paste(scene, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((pad, scene.height + pad + i * (ascent + descent)), line, font=face, fill=(255, 255, 255),
                  anchor="la")
    return canvas


def short_caption(text: str) -> str:
    """``text`` cut to ``CAPTION_CHARS`` characters (with an ellipsis) for a picture's caption."""
    return text if len(text) <= CAPTION_CHARS else text[: CAPTION_CHARS - 1] + "…"


def score_labels(names: Sequence[str], scores: Sequence[float]) -> list[str]:
    """``"name 0.87"`` captions."""
    return [f"{name} {float(score):.2f}" for name, score in zip(names, np.asarray(scores).tolist())]
