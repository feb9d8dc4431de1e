"""COCO-format box-classification data (BoxClass-CN, COCO instances, LVIS): categories, images, boxes.

Nothing is dropped silently: annotations that cannot be scored are counted by reason
(:data:`SKIP_REASONS`), here when the file is read (unknown image id or category) and later when the
image is (missing, unreadable, outside the images folder, degenerate box).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from ..io.coco import checked_categories, image_file, read_coco, shared_file_entries
from ..jsontext import finite_number
from ..paths import path_inside

SKIP_REASONS = (
    "missing_image",  # the image file is not under the images folder
    "unreadable_image",  # the file exists but does not decode as an image
    "outside_images",  # the file name points outside the images folder (../.., an absolute path)
    "degenerate_box",  # zero area, inverted, non-finite, malformed, or entirely outside the image
    "unknown_image_id",  # the annotation's image_id is not in `images`
    "unknown_category",  # the annotation's category_id is not in `categories`
    "failed",  # the model or the record's write failed on the image (the run's bad_files.jsonl says how)
)


@dataclass
class BoxAnnotation:
    annotation_id: int | str
    category_id: int | str
    bbox: tuple[float, float, float, float]  # xyxy, original-image pixels (may be degenerate)


@dataclass
class BoxImage:
    index: int  # position among the dataset's evaluated images: the order of reports and predictions
    image_id: int | str
    file_name: str
    annotations: list[BoxAnnotation] = field(default_factory=list)


@dataclass
class BoxClassDataset:
    """A COCO-format box-classification set: categories, images with their boxes, load-time skips."""

    categories: list[tuple[int | str, str]]  # (category id, name as written), in file order
    images: list[BoxImage]  # only images with at least one annotation to score
    skipped: Counter  # annotations dropped while reading, by reason (unknown image id / category)
    num_annotations: int  # every annotation in the file
    source: str = ""
    is_lvis: bool = False  # LVIS's own fields are present (category synonyms / frequency, negative categories)
    shared_files: int = 0  # image entries naming a file an earlier entry names (each its own image; reported)


def _xywh_to_xyxy(bbox) -> tuple[float, float, float, float]:
    """COCO xywh -> xyxy; a malformed box (not four finite numbers: ``true`` is not one, nor a 400-digit
    integer) becomes NaN so that box validation reports it as degenerate."""
    numbers = [finite_number(v) for v in bbox] if isinstance(bbox, (list, tuple)) and len(bbox) == 4 else [None]
    if None in numbers:
        return (float("nan"),) * 4
    x, y, w, h = numbers
    return x, y, x + w, y + h


def _looks_like_lvis(data: dict) -> bool:
    """LVIS files describe categories with synonyms and a frequency, and images with negative categories."""
    cats, images = data["categories"], data["images"]
    return any(isinstance(c, dict) and ("frequency" in c or "synonyms" in c) for c in cats[:50]) or any(
        isinstance(im, dict) and ("neg_category_ids" in im or "not_exhaustive_category_ids" in im) for im in images[:50])


def image_path(images_dir: Path, file_name: str) -> Path | None:
    """``images_dir / file_name``, or None when the name leads outside the folder (``..``, absolute)."""
    return path_inside(images_dir, file_name)


def load_boxclass_dataset(path) -> BoxClassDataset:
    """Read a COCO-format annotation file (COCO instances, LVIS, BoxClass-CN)."""
    path = Path(path)
    data = read_coco(path)
    categories = [(cat["id"], cat["name"]) for cat in checked_categories(data, path)]
    seen = {cid for cid, _ in categories}

    images: dict = {}
    for index, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise DatasetError(f"{path}: image entry {index} has no 'id'")
        name = image_file(entry)
        if not name:
            raise DatasetError(f"{path}: image {entry['id']!r} has neither 'file_name' nor 'coco_url'")
        images[entry["id"]] = BoxImage(-1, entry["id"], name)

    skipped: Counter = Counter()
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DatasetError(f"{path}: annotation {index} is not an object")
        image = images.get(ann.get("image_id"))
        if image is None:
            skipped["unknown_image_id"] += 1
        elif ann.get("category_id") not in seen:
            skipped["unknown_category"] += 1
        else:
            image.annotations.append(BoxAnnotation(ann.get("id", index), ann["category_id"], _xywh_to_xyxy(ann.get("bbox"))))

    kept = [image for image in images.values() if image.annotations]
    for index, image in enumerate(kept):
        image.index = index
    return BoxClassDataset(categories, kept, skipped, len(data["annotations"]), str(path), _looks_like_lvis(data),
                           shared_file_entries(data["images"]))


__all__ = ["SKIP_REASONS", "BoxAnnotation", "BoxClassDataset", "BoxImage", "image_path", "load_boxclass_dataset"]
