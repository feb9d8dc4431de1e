"""An FG-OVD run's picture: the boxes the model got most wrong, each as its image with the box drawn, the
first (positive) text and the text that beat it, with their probabilities (from ``OUT/predictions.jsonl``
and the annotation file's lines)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from ..io.fonts import lettering_for
from ..io.segment_pictures import shown_lines
from ..io.thumbnails import thumbnail
from .boxclass_data import image_path

WORST = 10  # boxes shown
THUMB = 150
TEXT_WIDTH = 520
ROW = THUMB + 36  # the taller of the thumbnail and the words beside it
HEADER = 56  # two lines of title
TEXT_LINES = 3  # lines of each text shown: a long expression is cut, the row keeps its height


def margin(prediction: dict) -> float:
    """By how much the best text's probability beat the first text's. A record written before fgdense kept
    the best text's probability has none: 0, so such lines come after those whose margin is known."""
    return prediction.get("best_prob", prediction["first"]) - prediction["first"]


def worst_lines(predictions: list[dict], count: int = WORST) -> list[dict]:
    """The ``count`` scored lines that were wrong, the largest margin first (then file order); skipped and
    right lines are never chosen."""
    wrong = [p for p in predictions if "skipped" not in p and not p["right"]]
    return sorted(wrong, key=lambda p: (-margin(p), p["line"]))[:count]


def worst_boxes(predictions: list[dict], lines: list, images_dir, font=None, count: int = WORST) -> Image.Image:
    """The picture of the ``count`` worst lines (:func:`worst_lines`): per row the image with the box, the
    first text and the text that won. ``lines``: :func:`~fgdense.evaluation.fgovd.load_fgovd` of the file
    the predictions are of; ``font`` a :class:`~fgdense.io.fonts.Lettering`, a font path or None. A run
    with no wrong box draws a sheet that says so."""
    chosen = worst_lines(predictions, count)
    scored = [p for p in predictions if "skipped" not in p]
    wrong = sum(not p["right"] for p in scored)
    lettering = lettering_for(font, [lines[p["line"] - 1].texts[i] for p in chosen for i in (0, p["best"])])
    sheet = Image.new("RGB", (THUMB + 24 + TEXT_WIDTH, HEADER + max(1, len(chosen)) * ROW), "white")
    draw = ImageDraw.Draw(sheet)
    title = lettering.font(16)
    draw.text((8, 8), f"FG-OVD: {wrong} of {len(scored)} boxes wrong; the {len(chosen)} beaten by most",
              fill="black", font=title)
    draw.text((8, 28), "image and box | first (positive) text | the text that won", fill="black", font=title)
    if not chosen:
        said = "every box was right" if scored else "no box was scored"
        draw.text((8, HEADER + 8), said, fill=(0, 120, 0), font=lettering.font(18))
    for row, prediction in enumerate(chosen):
        line = lines[prediction["line"] - 1]
        y = HEADER + row * ROW
        sheet.paste(thumbnail(image_path(Path(images_dir), line.image), THUMB, line.xyxy, as_stored=True), (8, y))
        _texts(draw, lettering, (THUMB + 24, y), prediction, line)
    return sheet


def _texts(draw, lettering, at: tuple[int, int], prediction: dict, line) -> None:
    """A row's words: the line and margin, then the first text and the winner, each with its probability."""
    small = lettering.font(14)
    x, y = at
    best = prediction["best"]
    won = "a negative" if best >= line.positives else "another positive"
    beaten = f"{margin(prediction):.3f}" if "best_prob" in prediction else "?"
    draw.text((x, y), f"line {prediction['line']}: beaten by {beaten}", fill=(200, 0, 0), font=small)
    y += 22
    for label, text, colour in ((f"first (positive) {prediction['first']:.3f}", line.texts[0], (0, 110, 0)),
                                (f"won: {won} {_prob(prediction)}", line.texts[best], (200, 0, 0))):
        draw.text((x, y), label, fill=colour, font=small)
        shown = shown_lines(lettering.drawable(text), small, TEXT_WIDTH - 8, TEXT_LINES)
        draw.multiline_text((x + 8, y + 18), "\n".join(shown), fill="black", font=small)
        y += 18 + 17 * TEXT_LINES + 8


def _prob(prediction: dict) -> str:
    return f"{prediction['best_prob']:.3f}" if "best_prob" in prediction else ""


__all__ = ["WORST", "margin", "worst_boxes", "worst_lines"]
