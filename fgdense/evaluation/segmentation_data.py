"""Segmentation datasets: label-map folders (VOC / ADE20K style) and COCO-format masks, as class-index maps.

* folders: an image folder, a folder of single-channel label PNGs with the same file stems (pixel value =
  index into the class list, ``ignore_index`` 255 = not scored) and a class list (a text file, one name per
  line, in index order);
* COCO-format mask annotations (polygons or RLE) read with pycocotools: classes are the categories in id
  order; crowd regions are not scored; unannotated pixels are not scored either, unless a background class
  name is given, which becomes class 0 and owns them.

Each dataset says, per image, what its ground truth is (:meth:`truth_key`): part of an evaluation record's
run hash, so an edited label map or annotation file is evaluated again.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import DatasetError, FGDenseError
from ..io.coco import checked_categories, read_coco, shared_file_entries
from ..io.inputs import is_image_name
from ..jsontext import finite_number
from .boxclass_data import image_path

IGNORE_INDEX = 255
# The pixel confusion is a dense (C, C + 1) matrix, per image and for the run: this many classes make 134 MB
# (ADE20K-full has 3688); more is refused when the dataset is read, before any work.
MAX_CLASSES = 4096


class GroundTruthError(DatasetError):
    """One image's ground truth that cannot be scored; ``reason`` is what an evaluation counts it under."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _stamp(path: Path) -> str:
    """A file's identity for "has it changed": path, size and modification time."""
    stat = path.stat()
    return f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}"


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
        self.shared_files = 0  # label maps and images pair by file stem: each file once
        self.images_dir, self.labels_dir = Path(images_dir), Path(labels_dir)
        for what, folder in (("images", self.images_dir), ("labels", self.labels_dir)):
            if not folder.is_dir():
                raise DatasetError(f"{what} folder {folder} does not exist")
        self.class_names = read_class_list(class_names) if isinstance(class_names, (str, Path)) else list(class_names)
        _check_class_count(self.class_names, class_names if isinstance(class_names, (str, Path)) else "the class list")
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

    def file_name(self, index: int) -> str:
        return self.items[index][0].name

    def truth_key(self, index: int) -> str:
        return _stamp(self.items[index][1])

    def ground_truth(self, index: int) -> np.ndarray:
        path = self.items[index][1]
        try:
            with Image.open(path) as label:
                if label.mode not in ("P", "L", "I", "I;16"):
                    raise GroundTruthError("bad_ground_truth", f"label map {path} is {label.mode}; expected a "
                                           "single-channel (palette or greyscale) PNG of class indices")
                gt = np.asarray(label).astype(np.int64)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # corrupt, cut short, huge
            if isinstance(err, FGDenseError):
                raise
            raise GroundTruthError("unreadable_ground_truth", f"label map {path} cannot be read: "
                                   f"{type(err).__name__}: {err}") from None
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
        if not self.images_dir.is_dir() and path.is_file():
            raise DatasetError(f"images folder {self.images_dir} does not exist")
        data = read_coco(path)  # the one reader's checks and messages; pycocotools indexes what it read
        checked_categories(data, path)
        self.shared_files = shared_file_entries(data["images"])  # reported: each entry is scored as its own image
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
                self.coco = COCO()
                self.coco.dataset = data
                self.coco.createIndex()
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
        _check_class_count(names, path)
        self.class_names = names
        self.background_index = 0 if background_class is not None else None
        self._class_of = {c: i + (background_class is not None) for i, c in enumerate(self.category_ids)}
        self.image_ids = sorted(self.coco.getImgIds())
        self.stamp = _stamp(path)

    def __len__(self) -> int:
        return len(self.image_ids)

    def file_name(self, index: int) -> str:
        return str(self.coco.imgs[self.image_ids[index]].get("file_name", ""))

    def image_path(self, index: int) -> Path | None:
        """The image file, or None when its ``file_name`` leads outside the images folder."""
        return image_path(self.images_dir, str(self.coco.imgs[self.image_ids[index]].get("file_name", "")))

    def truth_key(self, index: int) -> str:
        return f"{self.stamp} image {self.image_ids[index]!r}"

    def ground_truth(self, index: int) -> np.ndarray:
        info = self.coco.imgs[self.image_ids[index]]
        height, width = info.get("height"), info.get("width")
        # The map is allocated from the entry's size: no larger than an image PIL would decode.
        if not (all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width))
                and height * width <= 2 * (Image.MAX_IMAGE_PIXELS or 1 << 40)):
            raise GroundTruthError("bad_ground_truth", f"image {info['id']!r} has no usable height and width "
                                   f"({height!r} x {width!r})")
        gt = np.full((height, width), self.unannotated, np.int64)
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"], iscrowd=None))
        # Large first, so smaller objects lying on top of larger ones keep their pixels.
        for ann in sorted(anns, key=lambda a: -(finite_number(a.get("area", 0)) or 0.0)):
            if not ann.get("iscrowd", 0):
                if ann.get("category_id") not in self._class_of:
                    raise GroundTruthError("bad_ground_truth", f"annotation {ann.get('id')} has category_id "
                                           f"{ann.get('category_id')}, which is not in the file's categories")
                gt[self._mask(ann, height, width)] = self._class_of[ann["category_id"]]
        for ann in anns:  # crowd regions are never scored, whatever lies on them
            if ann.get("iscrowd", 0):
                gt[self._mask(ann, height, width)] = self.ignore_index
        return gt

    def _mask(self, ann: dict, height: int, width: int) -> np.ndarray:
        """An annotation's mask, or :class:`GroundTruthError` when its polygon or RLE cannot be decoded to
        the image's size (pycocotools says little: "input type is not supported", a crash on bad RLE)."""
        problem = _rle_problem(ann.get("segmentation"), height, width)
        if problem:
            raise GroundTruthError("bad_mask_annotation", f"annotation {ann.get('id')!r}: {problem}")
        try:
            mask = self.coco.annToMask(ann).astype(bool)
        except Exception as err:  # noqa: BLE001  pycocotools raises bare Exception, TypeError, IndexError...
            raise GroundTruthError("bad_mask_annotation", f"annotation {ann.get('id')!r}: its segmentation cannot "
                                   f"be decoded ({type(err).__name__}: {str(err)[:100]})") from None
        if mask.shape != (height, width):
            raise GroundTruthError("bad_mask_annotation", f"annotation {ann.get('id')!r}: its mask is "
                                   f"{mask.shape[1]}x{mask.shape[0]}, its image {width}x{height}")
        return mask


POLYGON_REACH = 10  # polygon points may lie this many image sizes away, no further


def _polygon_problem(polygons, height: int, width: int) -> str | None:
    """What is wrong with COCO polygons, or None: each a flat list of at least three finite (x, y) points,
    none absurdly far from the image. pycocotools rasterises a polygon along its edges, so a point at 1e300
    (or NaN) asks it for gigabytes, or crashes it, before any error."""
    reach = POLYGON_REACH * max(height, width)
    for polygon in polygons:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            return "a polygon is not a flat list of at least three (x, y) points"
        numbers = [finite_number(v) for v in polygon]
        if any(v is None or abs(v) > reach for v in numbers):
            return f"a polygon has a point that is not a finite number within {reach} pixels of the image"
    return None


def _rle_problem(segmentation, height: int, width: int) -> str | None:
    """What is wrong with an RLE mask (pycocotools decodes any counts without a word) or a polygon
    (:func:`_polygon_problem`), or None: an RLE's size must be the image's and its runs must cover it."""
    if isinstance(segmentation, list):
        return _polygon_problem(segmentation, height, width)
    if not isinstance(segmentation, dict):
        return None
    if segmentation.get("size") != [height, width]:
        return f"its RLE size {segmentation.get('size')!r} is not the image's [{height}, {width}]"
    counts = segmentation.get("counts")
    if isinstance(counts, str):
        counts = _rle_string_counts(counts)
    elif not (isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)):
        counts = None
    if counts is None or any(c < 0 for c in counts) or sum(counts) != height * width:
        return f"its RLE counts do not cover the {width}x{height} image"
    return None


def _rle_string_counts(text: str) -> list[int] | None:
    """The runs of a compressed COCO RLE string (maskApi.c's rleFrString, 6 bits a character, each run after
    the second stored as a difference), or None when a character is outside the code's range."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text) or not 48 <= ord(text[position]) < 112:
                return None
            code = ord(text[position]) - 48
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position, shift = position + 1, shift + 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        counts.append(value + (counts[-2] if len(counts) > 2 else 0))
    return counts


def _check_class_count(names: Sequence[str], source) -> None:
    if len(names) > MAX_CLASSES:
        raise DatasetError(f"{source} has {len(names)} classes; a segmentation evaluation takes at most {MAX_CLASSES} "
                           "(its pixel confusion matrix is dense)")


def _background_index(class_names: Sequence[str], background_class: str | None) -> int | None:
    if background_class is None:
        return None
    if background_class not in class_names:
        raise DatasetError(f"background class {background_class!r} is not in the class list")
    return list(class_names).index(background_class)


__all__ = ["IGNORE_INDEX", "MAX_CLASSES", "CocoDataset", "FolderDataset", "GroundTruthError", "read_class_list"]
