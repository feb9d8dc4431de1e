"""The words of COCO / LVIS categories for training texts: names, synonyms, Chinese names from a names
file, and the prompt templates they go through.

A names file (JSON list, or ``{"categories": [...]}``) gives per category id any of: ``name`` (the
display name used for training texts), ``synonyms``, ``name_zh``, ``synonyms_zh``::

    [{"id": 18, "name": "dog", "synonyms": ["puppy"], "name_zh": "狗"}, ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CocoFormatError
from ..io.coco import checked_categories, read_json


@dataclass
class CategoryNames:
    """The words for one category: the name and synonyms in English, and in Chinese when known."""

    id: int | str
    name: str
    synonyms: list[str] = field(default_factory=list)
    name_zh: str | None = None
    synonyms_zh: list[str] = field(default_factory=list)

    def words(self, language: str) -> tuple[str, list[str]]:
        """(primary name, synonyms) in ``language``; Chinese falls back to English when unknown."""
        if language == "zh" and self.name_zh:
            return self.name_zh, self.synonyms_zh
        return self.name, self.synonyms


def _words(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CocoFormatError(f"{where} must be a list of strings, got {value!r}")
    return [" ".join(v.replace("_", " ").split()) for v in value if v.strip()]


def _clean(name: str) -> str:
    """LVIS writes spaces as ``_`` (``traffic_light``); the texts use words."""
    return " ".join(str(name).replace("_", " ").split())


def read_categories(data: dict, path) -> dict:
    """Category id -> :class:`CategoryNames` from the file's ``categories`` (LVIS synonyms included)."""
    categories = {}
    for cat in checked_categories(data, path):
        name = _clean(cat["name"])
        synonyms = [s for s in _words(cat.get("synonyms"), f"{path}: category {cat['id']!r} 'synonyms'") if s != name]
        categories[cat["id"]] = CategoryNames(cat["id"], name, synonyms)
    return categories


def apply_names_file(categories: dict, names_file) -> int:
    """Update ``categories`` from a names file; returns how many of its entries name unknown ids."""
    path = Path(names_file)
    data = read_json(path, "names file")
    entries = data.get("categories") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise CocoFormatError(f"names file {path} must be a JSON list of categories (or {{'categories': [...]}})")
    unknown = 0
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise CocoFormatError(f"names file {path}: entry {index} needs an 'id'")
        cat = categories.get(entry["id"])
        if cat is None:
            unknown += 1
            continue
        where = f"names file {path}: category {entry['id']!r}"
        for key in ("name", "name_zh"):
            if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()):
                raise CocoFormatError(f"{where}: {key!r} must be a non-empty string")
        if "name" in entry:
            cat.name = _clean(entry["name"])
        if "synonyms" in entry:
            cat.synonyms = [s for s in _words(entry["synonyms"], f"{where} 'synonyms'") if s != cat.name]
        if "name_zh" in entry:
            cat.name_zh = entry["name_zh"].strip()
        if "synonyms_zh" in entry:
            cat.synonyms_zh = [s for s in _words(entry["synonyms_zh"], f"{where} 'synonyms_zh'") if s != cat.name_zh]
    return unknown


def check_templates(templates, what: str) -> tuple[str, ...]:
    """Templates as given, or ``"imagenet"``: CLIP's 80 templates, the prompts of the COCO / LVIS evaluation."""
    if templates == "imagenet":
        from ..prompts import imagenet_templates

        return imagenet_templates()
    if isinstance(templates, str):
        templates = [templates]
    templates = tuple(templates or ())
    if not templates:
        raise CocoFormatError(f"{what} is empty: give at least one template such as '{{}}'")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise CocoFormatError(f"{what} entry {t!r} must hold '{{}}' exactly once (where the name goes)")
    return templates
