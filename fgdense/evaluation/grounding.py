"""Grounding accuracy on a COCO-format file: does a category's name pick one of its own boxes?

For every image with boxes of at least two categories, each category present becomes a phrase (its
name), every annotated box of the image is a candidate, and the :class:`~fgdense.ground.Grounder`
picks the box whose region embedding is closest to the phrase. The pick is right when that box belongs
to the phrase's category. Chance is the share of the image's boxes that belong to the phrase's category,
averaged over phrases: a model that ignores the image scores about that. Images whose boxes are all of
one category cannot tell right from wrong and are not scored (counted in the report).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DatasetError, ImageLoadError
from ..processing.image import load_image
from .boxclass_data import BoxClassDataset, image_path, load_boxclass_dataset


def evaluate_grounding(grounder, annotations, images_dir, *, max_images: int | None = None,
                       progress: bool = True) -> dict:
    """Grounding accuracy of ``grounder`` (a :class:`~fgdense.ground.Grounder`) on a COCO-format file.

    Accuracies are fractions in [0, 1]; the report also gives chance, per-category accuracy and what
    was not scored (images of one category, images missing or unreadable).
    """
    dataset = annotations if isinstance(annotations, BoxClassDataset) else load_boxclass_dataset(annotations)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(f"images folder {images_dir} does not exist")
    names = dict(dataset.categories)
    not_scored: Counter = Counter()
    per_category = {cid: [0, 0] for cid in names}  # phrases, right
    right = phrases = 0
    chance = 0.0
    images = dataset.images[:max_images] if max_images is not None else dataset.images
    for image in tqdm(images, desc="grounding", unit="image", disable=not progress):
        categories = [a.category_id for a in image.annotations]
        present = list(dict.fromkeys(categories))
        if len(present) < 2:
            not_scored["one category only"] += 1
            continue
        path = image_path(images_dir, image.file_name)
        if path is None:
            not_scored["file name outside the images folder"] += 1
            continue
        if not path.is_file():
            not_scored["missing image"] += 1
            continue
        try:
            picture = load_image(path)
        except ImageLoadError:
            not_scored["unreadable image"] += 1
            continue
        boxes = np.array([a.bbox for a in image.annotations], dtype=np.float64)
        result = grounder.ground(picture, [names[c] for c in present], boxes=boxes)
        for cid, chosen in zip(present, result.best_indices):
            hit = int(categories[int(chosen)] == cid)
            right += hit
            phrases += 1
            chance += categories.count(cid) / len(categories)
            per_category[cid][0] += 1
            per_category[cid][1] += hit
    return {
        "accuracy": right / phrases if phrases else None,
        "chance": chance / phrases if phrases else None,
        "phrases": phrases,
        "right": right,
        "images_scored": len(images) - sum(not_scored.values()),
        "images_not_scored": dict(not_scored),
        "complete": max_images is None or max_images >= len(dataset.images),
        "per_category": {str(cid): {"name": names[cid], "phrases": n, "accuracy": hit / n if n else None}
                         for cid, (n, hit) in per_category.items()},
    }


def format_grounding_report(report: dict) -> str:
    """The report as a few printable lines."""
    if not report["phrases"]:
        return "no image had boxes of two categories or more: nothing to ground"
    lines = [f"  grounding accuracy {100 * report['accuracy']:.2f} %   chance {100 * report['chance']:.2f} %   "
             f"({report['right']} of {report['phrases']} phrases, {report['images_scored']} images)"]
    if report["images_not_scored"]:
        lines.append("  not scored: " + ", ".join(f"{n} ({why})" for why, n in report["images_not_scored"].items()))
    return "\n".join(lines)


__all__ = ["evaluate_grounding", "format_grounding_report"]
