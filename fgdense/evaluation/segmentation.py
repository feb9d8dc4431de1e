"""Semantic-segmentation evaluation: per-class IoU, mIoU and pixel accuracy of a :class:`~fgdense.segment.Segmenter`.

The datasets (label-map folders, COCO-format masks) are in :mod:`fgdense.evaluation.segmentation_data`.
The segmenter runs on the bulk runner (:mod:`fgdense.evaluation.runs`): workers decode each image as
stored and read its ground truth, ``torchrun`` shards the images, and each image's pixel confusion counts
are its record in ``OUT/records`` (the same command again skips the images recorded).

Scoring accumulates one confusion matrix over all pixels of all images (the standard protocol): IoU of
a class = TP / (TP + FP + FN); mIoU averages the classes that occur in the ground truth or the
predictions; pixel accuracy = correctly labelled pixels / scored pixels. A prediction may also be
"no class" (the segmenter's background when the class list has no background class): it is simply
wrong wherever the ground truth names a class. The report keeps the matrix (``confusion``: ground-truth
class index -> predicted class index -> pixels, non-zero cells only; index C = "no class"), so a
picture of what is mistaken for what (:mod:`fgdense.evaluation.plots`) needs the report alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..bulk.distributed import current
from ..errors import DatasetError, FGDenseError, printable, shorten
from ..segment import Segmenter
from .boxclass_report import display_width, percent, sparse_confusion
from .runs import RecordJob, RecordPreparer, dataset_item, evaluate_items, records_folder
from .segmentation_data import IGNORE_INDEX, CocoDataset, FolderDataset, GroundTruthError, read_class_list


# ------------------------------------------------------------------------------------------ scoring
def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(C, C + 1) pixel counts: row = ground-truth class, column = predicted class, last column = "no class".

    Pixels whose ground truth is ``ignore_index`` are not counted; predicted values outside
    ``[0, C)`` count as "no class".
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    valid = gt != ignore_index
    truth = gt[valid].astype(np.int64)
    if truth.size and (truth.min() < 0 or truth.max() >= num_classes):
        bad = sorted(set(np.unique(truth[(truth < 0) | (truth >= num_classes)]).tolist()))
        raise DatasetError(f"ground-truth values {bad} are not class indices 0..{num_classes - 1} "
                                       f"nor the ignore index {ignore_index}")
    guess = pred[valid].astype(np.int64)
    guess = np.where((guess >= 0) & (guess < num_classes), guess, num_classes)
    counts = np.bincount(truth * (num_classes + 1) + guess, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def scores_from_confusion(confusion: np.ndarray, class_names: Sequence[str]) -> dict:
    """Per-class IoU and accuracy, mIoU, mean accuracy and pixel accuracy from a confusion matrix.

    A class absent from both ground truth and predictions has IoU ``None`` and is left out of mIoU.
    """
    classes = len(class_names)
    tp = np.diag(confusion[:, :classes]).astype(np.float64)
    gt_pixels = confusion.sum(1).astype(np.float64)
    pred_pixels = confusion[:, :classes].sum(0).astype(np.float64)
    union = gt_pixels + pred_pixels - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        accuracy = np.where(gt_pixels > 0, tp / gt_pixels, np.nan)
    total = float(confusion.sum())

    def clean(x):
        return None if np.isnan(x) else float(x)

    return {
        "miou": clean(np.nanmean(iou)) if np.isfinite(iou).any() else None,
        "mean_accuracy": clean(np.nanmean(accuracy)) if np.isfinite(accuracy).any() else None,
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "scored_pixels": int(total),
        "per_class": [
            {"class": name, "iou": clean(iou[i]), "accuracy": clean(accuracy[i]),
             "gt_pixels": int(gt_pixels[i]), "pred_pixels": int(pred_pixels[i])}
            for i, name in enumerate(class_names)
        ],
    }


# ---------------------------------------------------------------------------------------- evaluation
def class_lookup(class_names: Sequence[str], background_index: int | None = None) -> tuple[list[str], np.ndarray]:
    """The segmenter's labels for the classes, and the lookup from its label-map values to class indices.

    The background class (if any) is not a label: the segmenter's background pixels (value -1, the last
    entry of the lookup) are predicted as it. Without one they are predicted as "no class"
    (``len(class_names)``).
    """
    indices = [i for i in range(len(class_names)) if i != background_index]
    lookup = np.array(indices + [len(class_names) if background_index is None else background_index], np.int64)
    return [class_names[i] for i in indices], lookup


@dataclass
class TruthPreparer(RecordPreparer):
    """Reads each image's ground truth beside the image, in the worker, and checks their sizes agree."""

    dataset: object = None

    def check(self, item, image):
        truth = self.dataset.ground_truth(item.index)
        if truth.shape != (image.height, image.width):
            raise GroundTruthError("bad_ground_truth", f"label map of {item.path} is {truth.shape[1]}x"
                                   f"{truth.shape[0]} but the image is {image.width}x{image.height}")
        # Values that are no class (nor the ignore index) are found here, before the model's work on the image.
        classes, ignore = len(self.dataset.class_names), self.dataset.ignore_index
        bad = np.unique(truth[((truth < 0) | (truth >= classes)) & (truth != ignore)])
        if bad.size:
            raise GroundTruthError("ground_truth_out_of_range", f"ground truth of {item.path} holds values "
                                   f"{shorten(bad.tolist())}, not class indices 0..{classes - 1} nor the ignore "
                                   f"index {ignore}")
        return truth


class SegmentationJob(RecordJob):
    """One image: :meth:`Segmenter.segment_batch` with the class names as labels; its record is the
    image's pixel confusion counts (ground truth, prediction, pixels), non-zero cells only."""

    kind = "segmentation"
    preparer_class = TruthPreparer

    def __init__(self, task, out, dataset, truth: dict):
        super().__init__(task, out, truth=truth)
        self.dataset = dataset
        self.labels, self.lookup = class_lookup(dataset.class_names, dataset.background_index)
        self.extra_settings = {"classes": list(dataset.class_names), "background": dataset.background_index,
                               "ignore_index": dataset.ignore_index}

    def preparer_fields(self) -> dict:
        return {"dataset": self.dataset}

    def compute(self, group):
        results = self.task.segment_batch([p.image for p in group], self.labels)
        classes = len(self.dataset.class_names)
        return [confusion_matrix(self.lookup[r.label_map], p.extra, classes, self.dataset.ignore_index)
                for p, r in zip(group, results)]

    def outcomes(self, prepared, result):
        return [[int(i), int(j), int(result[i, j])] for i, j in zip(*np.nonzero(result))]


# Why an image was not scored: its file (missing, unreadable, named outside the images folder); its ground
# truth (a label map that does not decode, a COCO polygon or RLE that does not, values that are no class,
# anything else that does not fit the image); or the model or the record's write failing on it.
SKIP_REASONS = ("missing_image", "unreadable_image", "outside_images", "unreadable_ground_truth",
                "bad_mask_annotation", "ground_truth_out_of_range", "bad_ground_truth", "failed")


def evaluate_segmentation(segmenter, dataset, *, out=None, workers: int = 0, max_images: int | None = None,
                          overwrite: bool = False, progress: bool = True, status=None) -> dict:
    """Score ``segmenter`` (a :class:`~fgdense.segment.Segmenter`, with its settings) on every image of
    ``dataset`` (:class:`FolderDataset` or :class:`CocoDataset`); a JSON-ready report.

    Class names are the segmenter's labels; the background class is the segmenter's background. Images
    that are missing, unreadable or named outside the images folder, and ground truths that cannot be read
    (a corrupt label map, a bad polygon or RLE), hold values that are no class or do not fit their image,
    are skipped before the model's work on them and counted by reason (``report["skipped"]``,
    :data:`SKIP_REASONS`). ``out`` keeps each image's
    record in ``out/records``: a later call with the same settings skips those images (``overwrite``
    redoes them). ``max_images``: only the first images. Under ``torch.distributed`` every rank calls this
    and returns the report.
    """
    if not isinstance(segmenter, Segmenter):
        raise FGDenseError(f"evaluate_segmentation measures a Segmenter, got {type(segmenter).__name__}")
    if workers < 0 or (max_images is not None and max_images < 0):
        raise FGDenseError("workers must be >= 0 and max_images >= 0")
    ranks = current()
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    truth = {i: dataset.truth_key(i) for i in range(count)}

    def items():
        for i in range(count):
            yield dataset_item(i, dataset.images_dir, dataset.file_name(i), where=f"image {i} of the dataset")

    with records_folder(out, ranks, overwrite) as folder:
        job = SegmentationJob(segmenter, folder, dataset, truth)
        evaluated = evaluate_items(job, items, workers=workers, overwrite=overwrite, progress=progress,
                                   status=status, ranks=ranks)
    classes = len(dataset.class_names)
    confusion = np.zeros((classes, classes + 1), np.int64)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    for _, outcomes, bad in evaluated.outcomes():
        if outcomes is not None:
            for i, j, n in outcomes:
                confusion[i, j] += n
        elif bad is not None:
            skipped[bad[0] if bad[0] in skipped else "failed"] += 1
    report = scores_from_confusion(confusion, dataset.class_names)
    report.update(images=count, images_scored=len(evaluated.records), skipped=skipped,
                  complete=count == len(dataset), ignore_index=dataset.ignore_index,
                  image_entries_sharing_a_file=getattr(dataset, "shared_files", 0),
                  background_class=None if dataset.background_index is None
                  else dataset.class_names[dataset.background_index],
                  confusion=sparse_confusion(confusion, [str(i) for i in range(classes + 1)]))
    return report


def format_report(report: dict) -> str:
    """A readable table: per-class IoU and accuracy, then the summary numbers (percentages)."""
    names = [printable(row["class"]) for row in report["per_class"]]  # escaped before the columns are measured
    width = max([5] + [display_width(name) for name in names])
    lines = [f"{'class' + ' ' * (width - 5)}  IoU %   acc %   gt pixels"]
    for shown, row in zip(names, report["per_class"]):
        name = shown + " " * (width - display_width(shown))
        lines.append(f"{name}  {percent(row['iou'])}  {percent(row['accuracy'])}  {row['gt_pixels']:>9}")
    lines.append(f"mIoU {percent(report['miou'])} %   pixel accuracy {percent(report['pixel_accuracy'])} %   "
                 f"mean accuracy {percent(report['mean_accuracy'])} %   images {report['images']}"
                 + ("" if report.get("complete", True) else " (incomplete)"))
    skipped = {k: v for k, v in report.get("skipped", {}).items() if v}
    if skipped:
        lines.append("skipped images: " + ", ".join(f"{k} {v}" for k, v in skipped.items()))
    if report.get("image_entries_sharing_a_file"):
        lines.append(f"{report['image_entries_sharing_a_file']} image entries name a file an earlier entry "
                     "names (each scored as its own image)")
    return "\n".join(lines)


__all__ = [
    "IGNORE_INDEX", "CocoDataset", "DatasetError", "FolderDataset", "SegmentationJob", "class_lookup",
    "confusion_matrix", "evaluate_segmentation", "format_report", "read_class_list", "scores_from_confusion",
]
