"""Task results to files: one writer per result kind, used by the bulk tools, ``tools/classify_masks.py``
and the demo alike, so the same result is the same files with the same JSON keys wherever it was made.

Every JSON starts with the same header (:func:`header`): ``run`` (bulk runs only: the hash that makes
resuming safe; first, so a short read finds it), ``image``, ``image_size_hw`` ([height, width]) and
``settings`` (the model and every setting the result was made with: :meth:`fgdense.task.Task.settings_json`),
then the result's own ``to_json()``. Floats are written as :func:`fgdense.io.files.shortest_floats` spells
them. Every set of files is rendered first and then written all-or-nothing (:func:`fgdense.io.files.write_all`),
so a rendering error writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..segment import SegmentationResult
from .box_pictures import draw_boxes, score_labels, short_caption
from .files import json_text, write_all, write_picture, write_text
from .output_names import result_paths, segmentation_paths
from .segment_pictures import heatmap_grid, label_map_image, masks_overlay, overlay, score_maps_grid

SEGMENTATION_OUTPUTS = ("overlay", "heatmaps", "label_map", "json")
RUN_KEY = "run"


def header(image_name, image: Image.Image, task, model_name: str, run: str | None = None, **overrides) -> dict:
    """The entries every result JSON starts with (module docstring); ``overrides`` are the per-call
    settings the result was made with (the demo's threshold, say)."""
    head = {} if run is None else {RUN_KEY: run}
    settings = {"model": str(model_name), **task.settings_json(**overrides)}
    return {**head, "image": str(image_name), "image_size_hw": [image.height, image.width], "settings": settings}


def write_segmentation(image: Image.Image, result: SegmentationResult, out_dir, stem: str, head: dict | None = None,
                       font=None, pictures: bool = True) -> dict[str, Path]:
    """One image's overlay, heatmap grid, palette label map and JSON (the label map and JSON only without
    ``pictures``); returns their paths."""
    paths = segmentation_paths(out_dir, stem, pictures)
    rendered = {"label_map": label_map_image(result)}
    if pictures:
        rendered.update(overlay=overlay(image, result, font=font), heatmaps=heatmap_grid(image, result, font=font))
    payload = {**(head or {}), **result.to_json(), "outputs": {k: p.name for k, p in paths.items() if k != "json"}}
    return _write(paths, payload, rendered)


def write_box_classification(image: Image.Image, result, out_dir, stem: str, head: dict | None = None, font=None,
                             pictures: bool = True) -> dict[str, Path]:
    """A :class:`~fgdense.classify.BoxClassification`: ``NAME.json`` (every box's labels) and ``NAME.png``
    (the boxes captioned with their best label and its probability)."""
    paths = result_paths(out_dir, stem, pictures)
    rendered = {}
    if pictures:
        found = result.to_detections()
        rendered["picture"] = draw_boxes(image, found, score_labels(found.data["class_name"], found.confidence),
                                         font=font)
    return _write(paths, {**(head or {}), **result.to_json()}, rendered)


def write_grounding(image: Image.Image, result, out_dir, stem: str, head: dict | None = None, font=None,
                    pictures: bool = True, heatmaps: bool = False) -> dict[str, Path]:
    """A :class:`~fgdense.ground.Grounding`: ``NAME.json`` (each phrase's box; ``mode`` says whether it
    was chosen among candidate boxes or proposed), ``NAME.png`` and, with ``heatmaps``, the phrase
    heatmaps ``NAME_heatmaps.png``. Long phrases are shortened on the pictures, never in the JSON."""
    paths = result_paths(out_dir, stem, pictures, heatmaps)
    rendered = {}
    if pictures:
        found = result.to_detections()
        names = [short_caption(name) for name in found.data["class_name"]]
        rendered["picture"] = draw_boxes(image, found, score_labels(names, found.confidence), font=font)
        if heatmaps:
            rendered["heatmaps"] = score_maps_grid(image, [short_caption(p) for p in result.phrases],
                                                   result.heatmaps(), font=font)
    mode = "candidate boxes" if result.boxes is not None else "proposals"
    return _write(paths, {**(head or {}), "mode": mode, **result.to_json()}, rendered)


def write_mask_classification(image: Image.Image, result, out_dir, stem: str, head: dict | None = None, font=None,
                              pictures: bool = True) -> dict[str, Path]:
    """A :class:`~fgdense.classify_masks.MaskClassification`: ``NAME.json`` (per mask its box, area, labels
    and RLE) and ``NAME.png`` (the masks tinted by their best label)."""
    paths = result_paths(out_dir, stem, pictures)
    rendered = {"picture": masks_overlay(image, result, font=font)} if pictures else {}
    return _write(paths, {**(head or {}), **result.to_json()}, rendered)


def _write(paths: dict[str, Path], payload: dict, rendered: dict[str, Image.Image]) -> dict[str, Path]:
    """The JSON and the rendered pictures at ``paths``, all or nothing; returns ``paths``."""
    writes = [(paths[key], write_picture(picture)) for key, picture in rendered.items()]
    write_all(writes + [(paths["json"], write_text(json_text(payload)))])
    return paths


__all__ = ["RUN_KEY", "SEGMENTATION_OUTPUTS", "header", "result_paths", "segmentation_paths",
           "write_box_classification", "write_grounding", "write_mask_classification", "write_segmentation"]
