"""Task results to files: per image, a segmentation's four outputs; a box tool's JSON and picture.

Every set of files is written all-or-nothing (:func:`fgdense.io.files.write_all`) and rendered before
anything is written, so a rendering error writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ..segment import SegmentationResult
from .files import write_all, write_picture, write_text
from .segment_pictures import heatmap_grid, label_map_image, overlay

SEGMENTATION_OUTPUTS = ("overlay", "heatmaps", "label_map", "json")


def segmentation_paths(out_dir, stem: str, pictures: bool = True) -> dict[str, Path]:
    """Where one image's segmentation outputs go: ``NAME_overlay.png``, ``NAME_heatmaps.png``,
    ``NAME_labels.png`` and ``NAME.json`` (the JSON only without pictures)."""
    out = Path(out_dir)
    paths = {"overlay": out / f"{stem}_overlay.png", "heatmaps": out / f"{stem}_heatmaps.png",
             "label_map": out / f"{stem}_labels.png", "json": out / f"{stem}.json"}
    return paths if pictures else {"label_map": paths["label_map"], "json": paths["json"]}


def write_segmentation(image: Image.Image, result: SegmentationResult, out_dir, stem: str, font: str | None = None,
                       extra_json: dict | None = None, pictures: bool = True) -> dict[str, Path]:
    """Write one image's overlay, heatmap grid, palette label map and JSON; returns their paths.

    ``pictures=False`` writes the data outputs only (label map and JSON).
    """
    paths = segmentation_paths(out_dir, stem, pictures)
    rendered = {"label_map": label_map_image(result)}
    if pictures:
        rendered.update(overlay=overlay(image, result, font=font), heatmaps=heatmap_grid(image, result, font=font))
    summary = {**(extra_json or {}), **result.to_json(),
               "outputs": {k: p.name for k, p in paths.items() if k != "json"}}
    writes = [(paths[key], write_picture(picture)) for key, picture in rendered.items()]
    write_all(writes + [(paths["json"], write_text(json.dumps(summary, ensure_ascii=False, indent=2)))])
    return paths


def write_result(json_path, payload: dict, png_path=None, picture: Image.Image | None = None) -> None:
    """Write a JSON result (and its picture), both or neither."""
    writes = [(json_path, write_text(json.dumps(payload, ensure_ascii=False, indent=2)))]
    if png_path is not None and picture is not None:
        writes.append((png_path, write_picture(picture)))
    write_all(writes)


__all__ = ["SEGMENTATION_OUTPUTS", "segmentation_paths", "write_result", "write_segmentation"]
