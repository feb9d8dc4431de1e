"""Pictures of segmentation results: coloured-mask overlay with a legend, heatmap grid, palette label map.

Text is drawn with a font that has glyphs for every label (Chinese included, see ``fgdense.fonts``),
so labels never come out as "???" boxes. :func:`write_outputs` writes all four per-image outputs, each
to a temporary name first and then renamed, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .files import write_all, write_text
from .fonts import load_font
from .segment import BACKGROUND, SegmentationResult

# Distinct colours (Tableau 20 order: saturated ones first); label k gets PALETTE[k % 20].
PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229),
], dtype=np.uint8)
BACKGROUND_COLOUR = (0, 0, 0)


def label_colour(index: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def _font(labels, size: int, font: str | None):
    return load_font("".join(labels) + "0123456789.%-", size=size, font=font)


def overlay(image: Image.Image, result: SegmentationResult, alpha: float = 0.5, font: str | None = None) -> Image.Image:
    """The image with each label's mask tinted in its colour, outlined, and a legend strip on the right.

    The legend lists every label (present or not) with its share of the image's pixels.
    """
    import cv2

    base = np.asarray(image.convert("RGB"), np.float32)
    colours = np.array([label_colour(k) for k in range(len(result.labels))] or [(0, 0, 0)], np.float32)
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


def _with_legend(picture: Image.Image, result: SegmentationResult, font: str | None) -> Image.Image:
    height = picture.height
    size = int(np.clip(height / 24, 12, 28))
    face = _font(result.labels, size, font)
    total = float(result.label_map.size)
    lines = [f"{label}  {area / total:.1%}" for label, area in zip(result.labels, result.areas())]
    lines.append(f"background  {(result.label_map == BACKGROUND).sum() / total:.1%}")
    measure = ImageDraw.Draw(picture)
    text_width = max(measure.textlength(line, font=face) for line in lines)
    pad, swatch = size // 2, size
    width = int(pad * 3 + swatch + text_width)
    row = int(size * 1.5)
    canvas = Image.new("RGB", (picture.width + width, max(height, pad * 2 + row * len(lines))), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        x, y = picture.width + pad, pad + i * row
        colour = label_colour(i) if i < len(result.labels) else BACKGROUND_COLOUR
        draw.rectangle([x, y, x + swatch, y + swatch], fill=colour, outline=(0, 0, 0))
        draw.text((x + swatch + pad, y + swatch / 2), line, font=face, fill=(0, 0, 0), anchor="lm")
    return canvas


def _jet(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) RGB uint8 with the jet colour map (as the official demo)."""
    import cv2

    grey = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_JET)[..., ::-1]


def heatmap_grid(image: Image.Image, result: SegmentationResult, columns: int | None = None, panel: int = 320,
                 font: str | None = None, shared_scale: bool = False) -> Image.Image:
    """One panel per label: its score map (jet, blended over the image), titled with the label.

    Each panel's colours span its own min..max score (printed in its title), as in the official
    dense-feature demo: where in the image a label matches best. ``shared_scale`` uses one range for
    all panels instead, so colours compare across labels. Panels are at most ``panel`` pixels on their
    long side.
    """
    height, width = result.image_size
    scale = min(1.0, panel / max(height, width))
    ph, pw = max(1, round(height * scale)), max(1, round(width * scale))
    small = np.asarray(image.convert("RGB").resize((pw, ph), Image.BILINEAR), np.float32)
    size = int(np.clip(ph / 16, 11, 20))
    face = _font(result.labels, size, font)
    title = int(size * 1.6)
    count = len(result.labels)
    columns = columns or min(count, 4)
    rows = -(-count // columns)
    gap = 4
    canvas = Image.new("RGB", (columns * (pw + gap) + gap, rows * (ph + title + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, label in enumerate(result.labels):
        values = result.scores if shared_scale else result.scores[k]
        low, high = float(values.min()), float(values.max())
        span = high - low if high > low else 1.0
        score = np.asarray(Image.fromarray(result.scores[k]).resize((pw, ph), Image.BILINEAR))
        blended = 0.45 * small + 0.55 * _jet((score - low) / span).astype(np.float32)
        x = gap + (k % columns) * (pw + gap)
        y = gap + (k // columns) * (ph + title + gap)
        draw.text((x, y + title / 2), f"{label}  [{low:.3f}, {high:.3f}]", font=face, fill=(0, 0, 0), anchor="lm")
        canvas.paste(Image.fromarray(blended.round().astype(np.uint8)), (x, y + title))
    return canvas


def label_map_image(result: SegmentationResult) -> Image.Image:
    """Palette PNG image: value 0 = background (black), value k + 1 = label k (its overlay colour)."""
    if len(result.labels) > 255:
        raise ValueError(f"a palette label map holds at most 255 labels, got {len(result.labels)}")
    values = (result.label_map + 1).astype(np.uint8)
    picture = Image.fromarray(values)  # "L"; putpalette turns it into "P"
    colours = [BACKGROUND_COLOUR] + [label_colour(k) for k in range(len(result.labels))]
    colours += [(255, 255, 255)] * (256 - len(colours))
    picture.putpalette([c for rgb in colours for c in rgb])
    return picture


def output_paths(out_dir, stem: str) -> dict[str, Path]:
    out = Path(out_dir)
    return {
        "overlay": out / f"{stem}_overlay.png",
        "heatmaps": out / f"{stem}_heatmaps.png",
        "label_map": out / f"{stem}_labels.png",
        "json": out / f"{stem}.json",
    }


def write_outputs(image: Image.Image, result: SegmentationResult, out_dir, stem: str, font: str | None = None,
                  extra_json: dict | None = None) -> dict[str, Path]:
    """Write the overlay, heatmap grid, palette label map and JSON of one image; returns their paths.

    Every picture is rendered before anything is written, so a rendering error writes nothing.
    """
    paths = output_paths(out_dir, stem)
    pictures = {
        "overlay": overlay(image, result, font=font),
        "heatmaps": heatmap_grid(image, result, font=font),
        "label_map": label_map_image(result),
    }
    summary = {**(extra_json or {}), **result.summary(),
               "outputs": {k: p.name for k, p in paths.items() if k != "json"}}
    writes = [(paths[key], lambda tmp, picture=picture: picture.save(tmp, format="PNG"))
              for key, picture in pictures.items()]
    write_all(writes + [(paths["json"], write_text(json.dumps(summary, ensure_ascii=False, indent=2)))])
    return paths


__all__ = ["PALETTE", "label_colour", "overlay", "heatmap_grid", "label_map_image", "write_outputs", "output_paths"]
