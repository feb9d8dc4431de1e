"""One COCO-format file for a whole run: the form pseudo-label pipelines consume, loadable by pycocotools.

A COCO dataset (``info``, ``categories``, ``images``, ``annotations``): ``categories`` are the run's labels
(or phrases), category id k + 1 for the k-th (as in the segmentation label maps, where 0 is background);
``images`` every image with complete outputs, its id its index in the run plus one; ``annotations`` per
image: for segmentation one per label present, its mask as COCO RLE, ``score`` the mean score over the
mask; for box classification one per box, ``score`` the best label's probability (``cosine`` too); for
grounding one per phrase with a box, ``score`` its cosine. Every annotation has ``bbox`` (x, y, w, h),
``area`` and ``iscrowd`` 0 (boxes clipped to the image; a number that is not finite, as a NaN score, is
``null``: the file is strict JSON), so ``pycocotools.coco.COCO(path)`` loads it, and its annotation list
is also a valid results list for ``COCO.loadRes``.

Built from the images' JSON outputs, not from memory, so it always equals the per-image files, images
an earlier run finished included. Each process writes its share's part (:func:`write_part`) in index
order; the main process merges the parts (:func:`merge_parts`), streaming, and removes them.
"""

from __future__ import annotations

import heapq
import json
import math
from pathlib import Path
from typing import Iterable, Iterator

from ..io.files import write_all


def part_path(coco: Path, rank: int) -> Path:
    return coco.with_name(f".{coco.name}.rank{rank}.part")


def write_part(path: Path, rows: Iterable[tuple[dict, list[dict]]]) -> int:
    """Write one process's (image entry, annotations) rows, in index order; returns how many. (A name that is
    not UTF-8 is written as its JSON escape, as :func:`fgdense.io.files.write_text` does.)"""
    count = 0
    try:
        with open(path, "w", encoding="utf-8", errors="backslashreplace") as f:
            for image, image_annotations in rows:
                f.write(_json_line({"image": image, "annotations": image_annotations}))
                count += 1
    except BaseException:  # Ctrl-C, SIGTERM, a full disk: no hidden part left behind
        path.unlink(missing_ok=True)
        raise
    return count


def _json_line(row: dict) -> str:
    """A row as strict JSON: NaN or Infinity is no JSON number (a score of NaN weights), so it is null."""
    try:
        return json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:
        return json.dumps(_finite(row), ensure_ascii=False, allow_nan=False) + "\n"


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _rows(parts: list[Path]) -> Iterator[dict]:
    """Every part's rows merged by image id (each part is already in id order)."""
    def read(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    return heapq.merge(*(read(p) for p in parts), key=lambda row: row["image"]["id"])


def merge_parts(coco: Path, parts: list[Path], categories: list[str], info: dict) -> dict:
    """Write the COCO file from the processes' parts (all-or-nothing) and remove the parts; returns counts."""
    counts = {"images": 0, "annotations": 0}

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as f:
            head = {"info": info, "categories": [{"id": k + 1, "name": name} for k, name in enumerate(categories)]}
            f.write(json.dumps(head, ensure_ascii=False)[:-1] + ',\n"images": [')
            for n, row in enumerate(_rows(parts)):  # first pass: the images
                f.write(("," if n else "") + "\n" + json.dumps(row["image"], ensure_ascii=False))
                counts["images"] += 1
            f.write('\n],\n"annotations": [')
            for row in _rows(parts):  # second pass: their annotations, numbered in order
                for annotation in row["annotations"]:
                    counts["annotations"] += 1
                    entry = {"id": counts["annotations"], "image_id": row["image"]["id"], **annotation}
                    f.write(("," if counts["annotations"] > 1 else "") + "\n" + json.dumps(entry, ensure_ascii=False))
            f.write("\n]}\n")

    try:
        write_all([(coco, write)])
    finally:  # written or not, the parts are of no further use (a rerun makes them again)
        for part in parts:
            part.unlink(missing_ok=True)
    return counts


__all__ = ["merge_parts", "part_path", "write_part"]
