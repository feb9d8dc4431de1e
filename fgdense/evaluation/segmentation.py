"""Semantic-segmentation evaluation: per-class IoU, mIoU and pixel accuracy.

Two dataset layouts:

* folders (VOC / ADE20K style): an image folder, a folder of single-channel label PNGs with the same
  file stems (pixel value = index into the class list, ``ignore_index`` 255 = not scored) and a class
  list (a text file, one name per line, in index order);
* COCO-format mask annotations (polygons or RLE) read with pycocotools: classes are the categories in
  id order; crowd regions are not scored; unannotated pixels are not scored either, unless a
  background class name is given, which becomes class 0 and owns them.

Scoring accumulates one confusion matrix over all pixels of all images (the standard protocol): IoU of
a class = TP / (TP + FP + FN); mIoU averages the classes that occur in the ground truth or the
predictions; pixel accuracy = correctly labelled pixels / scored pixels. A prediction may also be
"no class" (the segmenter's background when the class list has no background class): it is simply
wrong wherever the ground truth names a class. The report keeps the matrix (``confusion``: ground-truth
class index -> predicted class index -> pixels, non-zero cells only; index C = "no class"), so a
picture of what is mistaken for what (:mod:`fgdense.evaluation.plots`) needs the report alone.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import DatasetError, ImageLoadError
from ..io.files import write_json
from ..io.inputs import is_image_name
from ..processing.image import decode_as_stored as decode_image
from .boxclass_data import image_path
from .boxclass_report import display_width, percent, sparse_confusion

IGNORE_INDEX = 255


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


# ------------------------------------------------------------------------------------------ datasets
def read_class_list(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"class list {path} does not exist")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"class list {path} is empty")
    return names


class FolderDataset:
    """Image folder + label-PNG folder (same stems) + class list, VOC / ADE20K style."""

    def __init__(self, images_dir, labels_dir, class_names: Sequence[str] | str | Path,
                 ignore_index: int = IGNORE_INDEX, background_class: str | None = None,
                 reduce_zero_label: bool = False):
        # reduce_zero_label: ADE20K's convention, label 0 = "other" (not scored), 1..150 = classes 0..149.
        self.reduce_zero_label = reduce_zero_label
        self.images_dir, self.labels_dir = Path(images_dir), Path(labels_dir)
        for what, folder in (("images", self.images_dir), ("labels", self.labels_dir)):
            if not folder.is_dir():
                raise DatasetError(f"{what} folder {folder} does not exist")
        self.class_names = read_class_list(class_names) if isinstance(class_names, (str, Path)) else list(class_names)
        self.ignore_index = ignore_index
        self.background_index = _background_index(self.class_names, background_class)
        images = {p.stem: p for p in sorted(self.images_dir.iterdir()) if is_image_name(p)}
        labels = sorted(p for p in self.labels_dir.iterdir() if p.suffix.lower() == ".png")
        if not labels:
            raise DatasetError(f"labels folder {self.labels_dir} holds no .png label maps")
        missing = [p.name for p in labels if p.stem not in images]
        if missing:
            raise DatasetError(f"no image in {self.images_dir} for label map(s) {', '.join(missing[:5])}"
                                           + (" ..." if len(missing) > 5 else ""))
        self.items = [(images[p.stem], p) for p in labels]

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, index: int) -> Path:
        return self.items[index][0]

    def ground_truth(self, index: int) -> np.ndarray:
        path = self.items[index][1]
        with Image.open(path) as label:
            if label.mode not in ("P", "L", "I", "I;16"):
                raise DatasetError(f"label map {path} is {label.mode}; expected a single-channel "
                                               "(palette or greyscale) PNG of class indices")
            gt = np.asarray(label).astype(np.int64)
        if self.reduce_zero_label:
            keep = gt != self.ignore_index
            gt = np.where(keep & (gt == 0), self.ignore_index, np.where(keep, gt - 1, gt))
        return gt


class CocoDataset:
    """COCO-format mask annotations (polygons or RLE) over an image folder, read with pycocotools."""

    def __init__(self, annotation_file, images_dir, ignore_index: int = IGNORE_INDEX,
                 background_class: str | None = None):
        from pycocotools.coco import COCO

        path, self.images_dir = Path(annotation_file), Path(images_dir)
        if not path.is_file():
            raise DatasetError(f"annotation file {path} does not exist")
        if not self.images_dir.is_dir():
            raise DatasetError(f"images folder {self.images_dir} does not exist")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
                self.coco = COCO(str(path))
        except (ValueError, KeyError, TypeError, AssertionError) as err:
            raise DatasetError(f"{path} is not a COCO annotation file: {err}") from None
        self.category_ids = sorted(self.coco.getCatIds())
        if not self.category_ids:
            raise DatasetError(f"{path} has no categories")
        names = [self.coco.cats[c]["name"] for c in self.category_ids]
        self.ignore_index = ignore_index
        self.unannotated = ignore_index
        if background_class is not None:
            if background_class in names:
                raise DatasetError(f"background class {background_class!r} is also a category of {path}")
            names = [background_class] + names
            self.unannotated = 0
        self.class_names = names
        self.background_index = 0 if background_class is not None else None
        self._class_of = {c: i + (background_class is not None) for i, c in enumerate(self.category_ids)}
        self.image_ids = sorted(self.coco.getImgIds())

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path | None:
        """The image file, or None when its ``file_name`` leads outside the images folder."""
        return image_path(self.images_dir, str(self.coco.imgs[self.image_ids[index]].get("file_name", "")))

    def ground_truth(self, index: int) -> np.ndarray:
        info = self.coco.imgs[self.image_ids[index]]
        gt = np.full((info["height"], info["width"]), self.unannotated, np.int64)
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"], iscrowd=None))
        # Large first, so smaller objects lying on top of larger ones keep their pixels.
        for ann in sorted(anns, key=lambda a: -float(a.get("area", 0))):
            if not ann.get("iscrowd", 0):
                if ann["category_id"] not in self._class_of:
                    raise DatasetError(f"annotation {ann.get('id')} has category_id {ann['category_id']}, "
                                                   "which is not in the file's categories")
                gt[self.coco.annToMask(ann).astype(bool)] = self._class_of[ann["category_id"]]
        for ann in anns:  # crowd regions are never scored, whatever lies on them
            if ann.get("iscrowd", 0):
                gt[self.coco.annToMask(ann).astype(bool)] = self.ignore_index
        return gt


def _background_index(class_names: Sequence[str], background_class: str | None) -> int | None:
    if background_class is None:
        return None
    if background_class not in class_names:
        raise DatasetError(f"background class {background_class!r} is not in the class list")
    return list(class_names).index(background_class)


# ---------------------------------------------------------------------------------------- evaluation
def segmenter_predictor(segmenter, class_names: Sequence[str], background_index: int | None = None,
                        **segment_kwargs) -> Callable:
    """A ``predict(image) -> (H, W) class indices`` that runs ``segmenter`` with the class names as labels.

    The background class (if any) is not a label: the segmenter's background pixels are predicted as
    it. Without one they are predicted as "no class" (``len(class_names)``).
    """
    indices = [i for i in range(len(class_names)) if i != background_index]
    labels = [class_names[i] for i in indices]
    # label_map value k -> class indices[k]; -1 (background) -> the last entry.
    lookup = np.array(indices + [len(class_names) if background_index is None else background_index], np.int64)

    def predict(image) -> np.ndarray:
        return lookup[segmenter.segment(image, labels, **segment_kwargs).label_map]

    return predict


SKIP_REASONS = ("missing_image", "unreadable_image", "outside_images")


def evaluate_segmentation(predict: Callable, dataset, progress: bool = True, max_images: int | None = None) -> dict:
    """Score ``predict(image) -> (H, W) class indices`` on every image of ``dataset``; a JSON-ready report.

    Images that are missing, unreadable or named outside the images folder are skipped and counted by
    reason (``report["skipped"]``); a label map whose size differs from its image is an error.
    """
    from tqdm.auto import tqdm

    classes = len(dataset.class_names)
    confusion = np.zeros((classes, classes + 1), np.int64)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    for index in tqdm(range(count), desc="evaluating", unit="img", disable=not progress):
        path = dataset.image_path(index)
        reason = "outside_images" if path is None else "missing_image" if not path.is_file() else None
        if reason is None:
            try:
                # As stored, no EXIF rotation: label maps and COCO masks refer to the stored pixels. Rebuilt
                # from the array, the image carries no EXIF that a later step could rotate it by.
                image = Image.fromarray(decode_image(path))
            except ImageLoadError:
                reason = "unreadable_image"
        if reason is not None:
            skipped[reason] += 1
            continue
        gt = dataset.ground_truth(index)
        if gt.shape != (image.height, image.width):
            raise DatasetError(f"label map of {path} is {gt.shape[1]}x{gt.shape[0]} "
                               f"but the image is {image.width}x{image.height}")
        confusion += confusion_matrix(predict(image), gt, classes, dataset.ignore_index)
    report = scores_from_confusion(confusion, dataset.class_names)
    report.update(images=count, images_scored=count - sum(skipped.values()), skipped=skipped,
                  complete=count == len(dataset), ignore_index=dataset.ignore_index,
                  background_class=None if dataset.background_index is None
                  else dataset.class_names[dataset.background_index],
                  confusion=sparse_confusion(confusion, [str(i) for i in range(classes + 1)]))
    return report


def format_report(report: dict) -> str:
    """A readable table: per-class IoU and accuracy, then the summary numbers (percentages)."""
    width = max([5] + [display_width(row["class"]) for row in report["per_class"]])
    lines = [f"{'class' + ' ' * (width - 5)}  IoU %   acc %   gt pixels"]
    for row in report["per_class"]:
        name = row["class"] + " " * (width - display_width(row["class"]))
        lines.append(f"{name}  {percent(row['iou'])}  {percent(row['accuracy'])}  {row['gt_pixels']:>9}")
    lines.append(f"mIoU {percent(report['miou'])} %   pixel accuracy {percent(report['pixel_accuracy'])} %   "
                 f"mean accuracy {percent(report['mean_accuracy'])} %   images {report['images']}"
                 + ("" if report.get("complete", True) else " (incomplete)"))
    skipped = {k: v for k, v in report.get("skipped", {}).items() if v}
    if skipped:
        lines.append("skipped images: " + ", ".join(f"{k} {v}" for k, v in skipped.items()))
    return "\n".join(lines)


def write_report(path, report: dict) -> None:
    """Write the JSON report atomically (never half-written)."""
    write_json(path, report)


__all__ = [
    "IGNORE_INDEX", "DatasetError", "confusion_matrix", "scores_from_confusion", "read_class_list",
    "FolderDataset", "CocoDataset", "segmenter_predictor", "evaluate_segmentation", "format_report", "write_report",
]
