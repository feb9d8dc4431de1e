"""Pictures of segmentation results: coloured-mask overlay with a legend, heatmap grid, palette label map.

Text is drawn with a font that has glyphs for every label (Chinese included, see :mod:`fgdense.io.fonts`),
measured with that font so it fits its space at any image size: the legend's text grows with the image
and flows into more columns when it would be taller than the image; panel titles wrap inside their panel.
Every label of a result gets its own colour (up to 255, the palette label map's limit).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from typing import TYPE_CHECKING

from .fonts import lettering_for

if TYPE_CHECKING:  # the pictures take results; importing fgdense.segment here would load torch for the tools' checks
    from ..segment import SegmentationResult

# Tableau 20 (saturated ones first): the first 20 label colours, so pictures with few labels keep their look.
PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229),
], dtype=np.uint8)
BACKGROUND_COLOUR = (0, 0, 0)
MAX_LABEL_COLOURS = 255  # a palette PNG has 256 entries, one of them the background

LEGEND_FONT_SIZE = (12, 200)  # pixels: the legend's text is about 1/30 of the image height within these
LEGEND_TEXT_EM = 16  # a legend entry wraps beyond this many font sizes (a 60-character label takes 2-4 lines)
TITLE_FONT_SIZE = (11, 48)  # about 1/16 of a panel (default 320 pixels: 20-pixel titles)
TITLE_CELL_EM = 10  # a panel is at least this many font sizes wide, so a tiny image's title still has room


@functools.lru_cache(maxsize=1)
def _palette() -> np.ndarray:
    """(255, 3) uint8: Tableau 20, then colours picked one at a time as far as possible from every colour
    before them and from black and white (background and legend), in CIELAB, where distance follows how
    different colours look. Deterministic: a fixed grid of candidates, ties go to the first."""
    import cv2

    def lab(rgb: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(rgb.reshape(1, -1, 3).astype(np.float32) / 255, cv2.COLOR_RGB2Lab).reshape(-1, 3)

    levels = np.arange(0, 256, 17)  # 16 levels a channel: 4096 candidates
    candidates = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    candidates_lab = lab(candidates)
    taken = lab(np.concatenate([PALETTE, [BACKGROUND_COLOUR, (255, 255, 255)]]))
    distance = np.linalg.norm(candidates_lab[:, None] - taken[None], axis=2).min(axis=1)
    chosen = [*PALETTE]
    while len(chosen) < MAX_LABEL_COLOURS:
        best = int(np.argmax(distance))
        chosen.append(candidates[best])
        distance = np.minimum(distance, np.linalg.norm(candidates_lab - candidates_lab[best], axis=1))
    return np.array(chosen, dtype=np.uint8)


def label_colours(count: int) -> np.ndarray:
    """(count, 3) uint8 RGB: label k's colour in every picture (and the label map's palette), pairwise
    distinct for up to 255 labels; beyond that they repeat."""
    return _palette()[np.arange(count) % MAX_LABEL_COLOURS]


def label_colour(index: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in _palette()[index % MAX_LABEL_COLOURS])


def text_colour_on(colour) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``colour`` (by its luma)."""
    r, g, b = (int(c) for c in colour[:3])
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def wrap_text(text: str, face: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """``text`` in lines at most ``width`` pixels wide as ``face`` draws them (a single character wider than
    that keeps a line of its own). Breaks between words, and inside a word too long for a line (Chinese
    has no spaces between words)."""
    if face.getlength(text) <= width:
        return [text]
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}" if line else word
        if face.getlength(trial) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        while len(word) > 1 and face.getlength(word) > width:
            cut = 1
            while cut < len(word) and face.getlength(word[:cut + 1]) <= width:
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    return lines + [line] if line else lines


def shown_lines(text: str, face: ImageFont.FreeTypeFont, width: float, count: int) -> list[str]:
    """``text`` in at most ``count`` lines of at most ``width`` pixels; a cut text ends in " \u2026" that
    fits too (it used to be drawn past a sheet's edge). Its own line breaks and tabs are spaces: a short
    text of many lines was drawn whole, over the rows below. For pictures that give each text a fixed
    place (the evaluations' sheets)."""
    shown = wrap_text(" ".join(text.split()), face, width)
    if len(shown) <= count:
        return shown
    last = shown[count - 1]
    while last and face.getlength(last + " \u2026") > width:
        last = last[:-1]
    return shown[:count - 1] + [last + " \u2026"]


def _line_height(face: ImageFont.FreeTypeFont) -> int:
    """Distance between lines drawn with ``face`` so that their ascenders and descenders never touch."""
    ascent, descent = face.getmetrics()
    return ascent + descent


def overlay(image: Image.Image, result: SegmentationResult, alpha: float = 0.5, font=None) -> Image.Image:
    """The image with each label's mask tinted in its colour, outlined, and a legend strip on the right.

    The legend lists every label (present or not) with its share of the image's pixels.
    """
    import cv2

    from ..segment import BACKGROUND

    base = np.asarray(image.convert("RGB"), np.float32)
    colours = label_colours(max(1, len(result.labels))).astype(np.float32)
    tinted = base.copy()
    labelled = result.label_map != BACKGROUND
    tinted[labelled] = (1 - alpha) * base[labelled] + alpha * colours[result.label_map[labelled]]
    picture = tinted.round().astype(np.uint8)
    for k in range(len(result.labels)):
        mask = (result.label_map == k).astype(np.uint8)
        if mask.any():
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(picture, contours, -1, label_colour(k), thickness=max(1, min(base.shape[:2]) // 200))
    return _with_legend(Image.fromarray(picture), result, font)


def _with_legend(picture: Image.Image, result: SegmentationResult, font) -> Image.Image:
    """``picture`` with the legend to its right: one entry per label and one for the background.

    The text is about 1/30 of the picture's height, so it reads the same when the picture is shown at
    screen size, whether it is 100 or 6000 pixels tall. Entries wrap beyond ``LEGEND_TEXT_EM`` font
    sizes, and flow into a further column when a column would be taller than the picture (or than 20
    lines, for a tiny picture), so many or long labels widen the legend instead of stretching it down.
    """
    from ..segment import BACKGROUND

    height = picture.height
    size = int(np.clip(round(height / 30), *LEGEND_FONT_SIZE))
    lettering = lettering_for(font, result.labels)
    face = lettering.font(size)
    line = _line_height(face)
    pad, swatch = max(2, size // 2), size
    total = float(result.label_map.size)
    texts = [f"{lettering.drawable(label)}  {area / total:.1%}" for label, area in zip(result.labels, result.areas())]
    texts.append(f"background  {(result.label_map == BACKGROUND).sum() / total:.1%}")
    colours = [label_colour(k) for k in range(len(result.labels))] + [BACKGROUND_COLOUR]
    entries = [(colour, wrap_text(text, face, LEGEND_TEXT_EM * size)) for colour, text in zip(colours, texts)]

    column_limit = max(height - 2 * pad, 20 * line)
    columns, used = [[]], 0
    for entry in entries:
        tall = len(entry[1]) * line
        if columns[-1] and used + tall > column_limit:
            columns.append([])
            used = 0
        columns[-1].append(entry)
        used += tall
    widths = [swatch + pad + max(face.getlength(text) for _, lines in column for text in lines) for column in columns]
    legend_width = int(np.ceil(sum(widths) + pad * (len(columns) + 1)))
    legend_height = max(sum(len(lines) for _, lines in column) for column in columns) * line + 2 * pad

    canvas = Image.new("RGB", (picture.width + legend_width, max(height, legend_height)), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = picture.width + pad
    for column, width in zip(columns, widths):
        y = pad
        for colour, lines in column:
            top = y + (line - swatch) // 2  # the swatch sits beside the entry's first line
            draw.rectangle([x, top, x + swatch, top + swatch], fill=colour, outline=(0, 0, 0))
            for text in lines:
                draw.text((x + swatch + pad, y), text, font=face, fill=(0, 0, 0), anchor="la")
                y += line
        x += width + pad
    return canvas


def _jet(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) RGB uint8 with the jet colour map (as the official demo)."""
    import cv2

    grey = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_JET)[..., ::-1]


def heatmap_grid(image: Image.Image, result: SegmentationResult, columns: int | None = None, panel: int = 320,
                 font=None, shared_scale: bool = False) -> Image.Image:
    """One panel per label: its score map (jet, blended over the image), titled with the label.

    Each panel's colours span its own min..max score (printed in its title), as in the official
    dense-feature demo: where in the image a label matches best. ``shared_scale`` uses one range for
    all panels instead, so colours compare across labels. Panels are at most ``panel`` pixels on their
    long side. A title wraps within its panel (whose cell is at least ``TITLE_CELL_EM`` font sizes wide,
    so a tiny image's titles have room), and every panel's title strip is as tall as the longest title.
    """
    height, width = result.image_size
    scale = min(1.0, panel / max(height, width))
    ph, pw = max(1, round(height * scale)), max(1, round(width * scale))
    small = np.asarray(image.convert("RGB").resize((pw, ph), Image.BILINEAR), np.float32)
    size = int(np.clip(round(max(ph, pw) / 16), *TITLE_FONT_SIZE))
    lettering = lettering_for(font, result.labels)
    face = lettering.font(size)
    line = _line_height(face)
    cell = max(pw, TITLE_CELL_EM * size)
    gap = 4

    ranges, titles = [], []
    for k, label in enumerate(result.labels):
        values = result.scores if shared_scale else result.scores[k]
        low, high = float(values.min()), float(values.max())
        ranges.append((low, high))
        label, span = lettering.drawable(label), f"[{low:.3f}, {high:.3f}]"
        whole = f"{label}  {span}"
        # One line when it fits; else the label wrapped, and the range on a line of its own.
        titles.append([whole] if face.getlength(whole) <= cell else wrap_text(label, face, cell) + [span])
    strip = max(len(lines) for lines in titles) * line + gap

    count = len(result.labels)
    columns = columns or min(count, 4)
    rows = -(-count // columns)
    canvas = Image.new("RGB", (columns * (cell + gap) + gap, rows * (ph + strip + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, ((low, high), lines) in enumerate(zip(ranges, titles)):
        span = high - low if high > low else 1.0
        score = np.asarray(Image.fromarray(result.scores[k]).resize((pw, ph), Image.BILINEAR))
        blended = 0.45 * small + 0.55 * _jet((score - low) / span).astype(np.float32)
        x = gap + (k % columns) * (cell + gap)
        y = gap + (k // columns) * (ph + strip + gap)
        for i, text in enumerate(lines):
            draw.text((x, y + i * line), text, font=face, fill=(0, 0, 0), anchor="la")
        canvas.paste(Image.fromarray(blended.round().astype(np.uint8)), (x + (cell - pw) // 2, y + strip))
    return canvas


def score_maps_grid(image: Image.Image, names, maps, font=None, panel: int = 320) -> Image.Image:
    """:func:`heatmap_grid` of bare score maps (K, H, W) titled ``names`` (grounding's phrase heatmaps, the
    dense explorer's similarities)."""
    from ..segment import BACKGROUND, SegmentationResult

    maps = np.asarray(maps, np.float32)
    empty = np.full(maps.shape[1:], BACKGROUND, np.int32)  # no label map: every pixel background
    return heatmap_grid(image, SegmentationResult(list(names), maps, empty), panel=panel, font=font)


def masks_overlay(image: Image.Image, result, font=None) -> Image.Image:
    """A mask classification drawn: every mask tinted in its best label's colour (later masks over
    earlier ones), with the segmentation overlay's legend."""
    from ..segment import BACKGROUND, SegmentationResult

    label_map = np.full(result.masks.shape[1:], BACKGROUND, np.int32)
    for mask, row in zip(result.masks, result.top_k):
        label_map[mask] = row[0]
    scores = np.zeros((len(result.labels), *label_map.shape), np.float32)
    return overlay(image, SegmentationResult(result.labels, scores, label_map), font=font)


def label_map_image(result: SegmentationResult) -> Image.Image:
    """Palette PNG image: value 0 = background (black), value k + 1 = label k (its overlay colour)."""
    if len(result.labels) > MAX_LABEL_COLOURS:
        raise ValueError(f"a palette label map holds at most {MAX_LABEL_COLOURS} labels, got {len(result.labels)}")
    values = (result.label_map + 1).astype(np.uint8)
    picture = Image.fromarray(values)  # "L"; putpalette turns it into "P"
    colours = np.full((256, 3), 255, np.uint8)
    colours[0] = BACKGROUND_COLOUR
    colours[1:len(result.labels) + 1] = label_colours(len(result.labels))
    picture.putpalette(colours.ravel().tolist())
    return picture


__all__ = ["PALETTE", "heatmap_grid", "label_colour", "label_colours", "label_map_image", "masks_overlay", "overlay",
           "score_maps_grid", "shown_lines", "text_colour_on", "wrap_text"]
