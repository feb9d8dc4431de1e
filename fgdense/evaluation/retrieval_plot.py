"""A retrieval run's picture: the captions that found their image worst, each beside its own image and
the image it found first (from ``OUT/ranks.json``)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from ..io.fonts import lettering_for
from ..io.segment_pictures import shown_lines
from ..io.thumbnails import thumbnail
from .boxclass_data import image_path

WORST = 10  # captions shown
THUMB = 150
TEXT_WIDTH = 420
ROW = THUMB + 30


def _image(ranks: dict, index: int) -> Image.Image:
    name = ranks["images"][index]
    path = Path(name) if Path(name).is_absolute() else image_path(Path(ranks["images_dir"]), name)
    return thumbnail(path, THUMB)


def worst_queries(ranks: dict, font=None, count: int = WORST) -> Image.Image:
    """The ``count`` captions of highest text-to-image rank: caption | its image | the image found first."""
    order = sorted(range(len(ranks["t2i"])), key=lambda t: (-ranks["t2i"][t], t))[:count]
    lettering = lettering_for(font, [ranks["texts"][t] for t in order])
    small, title = lettering.font(14), lettering.font(18)
    sheet = Image.new("RGB", (TEXT_WIDTH + 2 * (THUMB + 20), 40 + max(1, len(order)) * ROW), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), "captions that found their image worst: caption | its image | found first", fill="black",
              font=title)
    if not order:
        draw.text((8, 48), "no caption was scored", fill=(120, 120, 120), font=title)
    for row, t in enumerate(order):
        y = 40 + row * ROW
        # wrapped by width, not by 48 characters: 48 Chinese ones ran under the thumbnails beside the column
        lines = shown_lines(lettering.drawable(ranks["texts"][t]), small, TEXT_WIDTH - 16, 8)
        draw.text((8, y), f"rank {ranks['t2i'][t] + 1}", fill=(200, 0, 0), font=small)
        draw.multiline_text((8, y + 20), "\n".join(lines), fill="black", font=small)
        for column, index in enumerate((ranks["owner"][t], ranks["t2i_best"][t])):
            x = TEXT_WIDTH + column * (THUMB + 20)
            sheet.paste(_image(ranks, index), (x, y))
            draw.text((x, y + THUMB + 4), "its image" if column == 0 else "found first", fill="black", font=small)
    return sheet


__all__ = ["worst_queries"]
