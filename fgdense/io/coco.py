"""COCO-format annotation files (COCO instances, LVIS, BoxClass-CN): the one reader evaluation and training share.

It checks what every user of such a file relies on, with one error type (:class:`~fgdense.errors.DatasetError`)
and one wording: the file exists and is JSON, it is an object with ``images``, ``annotations`` and
``categories`` lists, no image id is given twice, every category has an ``id`` (once) and a non-empty
``name``. Image entries that name a file an earlier entry names are legal (each is its own image, with its
own annotations) and counted: :func:`shared_file_entries`, which the reports show. What each user does
with the entries beyond that (boxes, masks, synonyms) is its own.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ..jsontext import read_json_file
from ..paths import missing_file_reason

SECTIONS = ("images", "annotations", "categories")


def read_json(path, what: str):
    """A JSON file's content, or one line naming ``what`` (the file's role) and why it cannot be read."""
    path = Path(path)
    reason = missing_file_reason(path)
    if reason:
        raise DatasetError(f"{what} {path} {reason}")
    return read_json_file(path, f"{what} {path}", DatasetError)


def read_coco(path) -> dict:
    """The parsed annotation file, or one line saying why it is not a COCO-format file."""
    path = Path(path)
    data = read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {path} is not a COCO-format object (images, annotations, categories)")
    missing = [k for k in SECTIONS if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(f"annotation file {path} lacks the COCO-format list(s) {', '.join(map(repr, missing))}")
    _refuse_repeated_ids(data["images"], path)
    return data


def _refuse_repeated_ids(images: list, path) -> None:
    """An image id given twice is refused: which entry would its annotations mean (the later one silently
    replaced the earlier)?"""
    ids = set()
    for entry in images:
        image_id = entry.get("id") if isinstance(entry, dict) else None  # each user checks entries itself
        if isinstance(image_id, (int, str)) and not isinstance(image_id, bool):
            if image_id in ids:
                raise DatasetError(f"{path}: image id {image_id!r} appears twice")
            ids.add(image_id)


def shared_file_entries(images: list) -> int:
    """How many image entries name a file an earlier entry already names (a file listed twice is one)."""
    names = [image_file(entry) for entry in images if isinstance(entry, dict)]
    named = [name for name in names if name]
    return len(named) - len(set(named))


def checked_categories(data: dict, path) -> list[dict]:
    """The file's category entries, in file order, each with an ``id`` (unique) and a non-empty ``name``."""
    seen = set()
    for index, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str) or not cat["name"].strip():
            raise DatasetError(f"{path}: category {index} needs an 'id' and a non-empty 'name'")
        if cat["id"] in seen:
            raise DatasetError(f"{path}: category id {cat['id']!r} appears twice")
        seen.add(cat["id"])
    if not seen:
        raise DatasetError(f"{path} has no categories")
    return list(data["categories"])


def image_file(entry: dict) -> str:
    """``file_name`` (COCO, BoxClass-CN) or the last path component of ``coco_url`` (LVIS)."""
    name = entry.get("file_name") or ""
    if not name and entry.get("coco_url"):
        name = str(entry["coco_url"]).rstrip("/").rsplit("/", 1)[-1]
    return str(name)


__all__ = ["SECTIONS", "checked_categories", "image_file", "read_coco", "read_json", "shared_file_entries"]
