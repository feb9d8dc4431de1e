"""Grounding accuracy on a COCO-format file: does a category's name pick one of its own boxes?

For every image with boxes of at least two categories, each category present becomes a phrase (its
name), every annotated box of the image is a candidate, and the :class:`~fgdense.ground.Grounder` (the
class users run, with its settings) picks the box whose region embedding is closest to the phrase. The
pick is right when that box belongs to the phrase's category. Chance is the share of the image's boxes
that belong to the phrase's category, averaged over phrases: a model that ignores the image scores about
that. Images whose boxes are all of one category cannot tell right from wrong and are not scored (counted
in the report), nor are boxes without area: they are no candidates, counted in the report
(``boxes_not_candidates``). The images go through the bulk runner (:mod:`fgdense.evaluation.runs`):
workers, ``torchrun`` shards, and each image's picks are its record.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np

from ..bulk.distributed import current
from ..errors import FGDenseError
from ..ground import Grounder
from ..model.boxes import validate_boxes
from .runs import box_dataset_inputs, RecordJob, RecordPreparer, dataset_item, evaluate_items, records_folder

NOT_SCORED = {"outside_images": "file name outside the images folder", "missing_image": "missing image",
              "unreadable_image": "unreadable image", "bad_ground_truth": "boxes outside the image"}


def _has_area(box) -> bool:
    x1, y1, x2, y2 = box
    return all(math.isfinite(v) for v in box) and x2 > x1 and y2 > y1


class GroundPreparer(RecordPreparer):
    """Checks the candidate boxes against the image; one outcome per phrase (the categories present)."""

    def outcome_count(self, item):
        return len(json.loads(self.truth[item.index]))

    def check(self, item, image):
        validate_boxes(item.boxes, (image.height, image.width))


class GroundingJob(RecordJob):
    """One image: :meth:`Grounder.ground_batch` with its categories' names as phrases and its boxes as
    candidates; outcomes = the index of the box each phrase picked."""

    kind = "grounding"
    preparer_class = GroundPreparer

    def __init__(self, task, out, phrases: dict, truth: dict):
        super().__init__(task, out, truth=truth)
        self.phrases = phrases  # image index -> its phrases (names of the categories present)

    def compute(self, group):
        results = [None] * len(group)
        by_phrases: dict[tuple, list[int]] = {}
        for i, prepared in enumerate(group):
            by_phrases.setdefault(tuple(self.phrases[prepared.item.index]), []).append(i)
        for phrases, members in by_phrases.items():
            found = self.task.ground_batch([group[i].image for i in members], list(phrases),
                                           boxes=[group[i].boxes for i in members])
            for i, result in zip(members, found):
                results[i] = result
        return results

    def outcomes(self, prepared, result):
        return [int(i) for i in result.best_indices]


def _report(dataset, images, scored, evaluated, not_scored: Counter, max_images) -> dict:
    names = dict(dataset.categories)
    per_category = {cid: [0, 0] for cid in names}  # phrases, right
    right = phrases = 0
    chance = 0.0
    for item, outcomes, bad in evaluated.outcomes():
        if outcomes is None:
            if bad is not None:
                not_scored[NOT_SCORED.get(bad[0], "failed")] += 1
            continue
        categories = scored[item.index]
        for cid, chosen in zip(dict.fromkeys(categories), outcomes):
            hit = int(categories[chosen] == cid)
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
        "images_scored": len(evaluated.records),
        "images_not_scored": dict(not_scored),
        "complete": max_images is None or max_images >= len(dataset.images),
        "per_category": {str(cid): {"name": names[cid], "phrases": n, "accuracy": hit / n if n else None}
                         for cid, (n, hit) in per_category.items()},
    }


def evaluate_grounding(grounder, annotations, images_dir, *, out=None, workers: int = 0,
                       max_images: int | None = None, overwrite: bool = False, progress: bool = True,
                       status=None) -> dict:
    """Grounding accuracy of ``grounder`` (a :class:`~fgdense.ground.Grounder`) on a COCO-format file.

    Accuracies are fractions in [0, 1]; the report also gives chance, per-category accuracy and what
    was not scored (images of one category, images missing or unreadable). ``out`` keeps each image's
    record in ``out/records``: a later call with the same settings skips those images (``overwrite``
    redoes them). Under ``torch.distributed`` every rank calls this and returns the report.
    """
    if not isinstance(grounder, Grounder):
        raise FGDenseError(f"evaluate_grounding measures a Grounder, got {type(grounder).__name__}")
    dataset, images_dir = box_dataset_inputs(annotations, images_dir, workers, max_images)
    names = dict(dataset.categories)
    images = dataset.images[:max_images] if max_images is not None else dataset.images
    not_scored: Counter = Counter()
    scored, phrases, truth = {}, {}, {}
    no_area = 0  # boxes that are no candidates: zero area, inverted, not numbers
    for image in images:
        candidates = [a for a in image.annotations if _has_area(a.bbox)]
        no_area += len(image.annotations) - len(candidates)
        present = list(dict.fromkeys(a.category_id for a in candidates))
        if len(present) < 2:
            not_scored["one category only"] += 1
            continue
        scored[image.index] = [a.category_id for a in candidates]
        phrases[image.index] = [names[c] for c in present]
        # The phrases (the category names) too: a category renamed in the file makes the record stale.
        truth[image.index] = json.dumps([[str(c), names[c]] for c in present], ensure_ascii=False)

    def items():
        for image in images:
            if image.index in scored:
                boxes = np.array([a.bbox for a in image.annotations if _has_area(a.bbox)], dtype=np.float64)
                yield dataset_item(image.index, images_dir, image.file_name, boxes,
                                   f"image {image.image_id!r} of {dataset.source or 'the annotations'}")

    ranks = current()
    with records_folder(out, ranks, overwrite) as folder:
        job = GroundingJob(grounder, folder, phrases, truth)
        evaluated = evaluate_items(job, items, workers=workers, overwrite=overwrite, progress=progress,
                                   status=status, ranks=ranks)
    report = _report(dataset, images, scored, evaluated, not_scored, max_images)
    report["boxes_not_candidates"] = {"degenerate_box": no_area}
    report["image_entries_sharing_a_file"] = dataset.shared_files
    return report


def format_grounding_report(report: dict) -> str:
    """The report as a few printable lines."""
    if not report["phrases"]:
        return "no image had boxes of two categories or more: nothing to ground"
    lines = [f"  grounding accuracy {100 * report['accuracy']:.2f} %   chance {100 * report['chance']:.2f} %   "
             f"({report['right']} of {report['phrases']} phrases, {report['images_scored']} images)"]
    if report["images_not_scored"]:
        lines.append("  not scored: " + ", ".join(f"{n} ({why})" for why, n in report["images_not_scored"].items()))
    if report.get("image_entries_sharing_a_file"):
        lines.append(f"  {report['image_entries_sharing_a_file']} image entries name a file an earlier entry "
                     "names (each scored as its own image)")
    dropped = report.get("boxes_not_candidates", {}).get("degenerate_box", 0)
    if dropped:
        lines.append(f"  {dropped} box(es) without area (zero, inverted or not numbers) were not candidates")
    return "\n".join(lines)


__all__ = ["GroundingJob", "evaluate_grounding", "format_grounding_report"]
