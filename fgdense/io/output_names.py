"""Where each result kind's files go, as names only: the bulk runs check every output name with these
before torch loads (:mod:`fgdense.io.outputs` writes the files)."""

from __future__ import annotations

from pathlib import Path


def segmentation_paths(out_dir, stem: str, pictures: bool = True) -> dict[str, Path]:
    """Where one image's segmentation outputs go: ``NAME_overlay.png``, ``NAME_heatmaps.png``,
    ``NAME_labels.png`` and ``NAME.json`` (the JSON only without pictures)."""
    out = Path(out_dir)
    paths = {"overlay": out / f"{stem}_overlay.png", "heatmaps": out / f"{stem}_heatmaps.png",
             "label_map": out / f"{stem}_labels.png", "json": out / f"{stem}.json"}
    return paths if pictures else {"label_map": paths["label_map"], "json": paths["json"]}


def result_paths(out_dir, stem: str, pictures: bool = True, heatmaps: bool = False) -> dict[str, Path]:
    """Where a box, grounding or mask result goes: ``NAME.json``, ``NAME.png`` (the picture) and, for
    grounding's phrase heatmaps when asked, ``NAME_heatmaps.png``."""
    out = Path(out_dir)
    paths = {"json": out / f"{stem}.json"}
    if pictures:
        paths["picture"] = out / f"{stem}.png"
        if heatmaps:
            paths["heatmaps"] = out / f"{stem}_heatmaps.png"
    return paths


def output_suffixes(kind: str, pictures: bool = True) -> tuple[str, ...]:
    """What follows an image's output name in its files: segmentation's four (two without pictures), or
    the box tools' JSON and picture."""
    if kind == "segment":
        return tuple(p.name for p in segmentation_paths(Path(), "", pictures).values())
    return (".json", ".png") if pictures else (".json",)


__all__ = ["output_suffixes", "result_paths", "segmentation_paths"]
