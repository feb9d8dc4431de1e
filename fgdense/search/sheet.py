"""A query's answers as one contact-sheet picture: the query on top, then a grid of thumbnails, each with
its rank and score, and (for regions) its box drawn on its image."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from ..io.fonts import lettering_for
from ..io.thumbnails import thumbnail

THUMB = 192  # a thumbnail's longer side, pixels
COLUMNS = 5
CAPTION = 20  # pixels under each thumbnail for its rank and score
HEADER = 40


def contact_sheet(query: str, hits: list[dict], font=None) -> Image.Image:
    """The picture of ``hits`` (as :func:`fgdense.search.query.search` returns them) for ``query``."""
    lettering = lettering_for(font, [query])
    rows = max(1, -(-len(hits) // COLUMNS))
    cell_w, cell_h = THUMB + 8, THUMB + CAPTION + 8
    sheet = Image.new("RGB", (COLUMNS * cell_w, HEADER + rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), lettering.drawable(query), fill=(0, 0, 0), font=lettering.font(22))
    for n, hit in enumerate(hits):
        x, y = (n % COLUMNS) * cell_w + 4, HEADER + (n // COLUMNS) * cell_h + 4
        thumb = thumbnail(hit["image"], THUMB, hit.get("xyxy"))
        sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        score = hit.get("score", hit.get("cosine"))
        caption = f"#{n + 1}  {score:.3f}  {Path(hit['image']).name}"
        draw.text((x, y + THUMB + 2), lettering.drawable(caption[:34]), fill=(0, 0, 0), font=lettering.font(13))
    if not hits:
        draw.text((8, HEADER + 8), "no results", fill=(120, 120, 120), font=lettering.font(16))
    return sheet


__all__ = ["contact_sheet"]
