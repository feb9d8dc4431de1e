"""What a label, phrase or caption must be, checked before anything heavy is imported.

The tools check their arguments with these before torch and transformers load, so a mistake is reported
in a fraction of a second; :mod:`fgdense.processing.text` and :mod:`fgdense.prompts` use the same checks.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

from .errors import LabelError


def check_texts(texts: Sequence[str] | str, what: str = "caption") -> list[str]:
    """A non-empty list of strings, or a clear error."""
    if isinstance(texts, str):
        texts = [texts]
    try:
        texts = list(texts)
    except TypeError:
        raise LabelError(f"expected a list of {what}s, got {type(texts).__name__}") from None
    if not texts:
        raise LabelError(f"empty {what} list: give at least one {what}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise LabelError(f"{what} {index} is a {type(text).__name__}, not a string")
    return texts


def check_printable(text: str, what: str) -> str:
    """``text`` if it is not blank and holds no control characters (a tab, a newline, an escape...)."""
    bad = sorted({ch for ch in text if unicodedata.category(ch) == "Cc"})
    if bad:
        shown = ", ".join(f"U+{ord(ch):04X}" for ch in bad)
        raise LabelError(f"{what} {text!r} holds control characters ({shown}); labels are plain text")
    if not text.strip():
        raise LabelError(f"{what} {text!r} is blank")
    return text


def split_synonyms(label: str) -> list[str]:
    """``"cat|猫"`` -> ``["cat", "猫"]``; blank parts are dropped."""
    parts = [part.strip() for part in str(label).split("|")]
    parts = [part for part in parts if part]
    if not parts:
        raise LabelError(f"label {label!r} is empty")
    return parts


def check_labels(labels: Sequence[str] | str, what: str = "label") -> list[str]:
    """A non-empty list of distinct, printable, non-blank labels, or a :class:`LabelError` naming the bad one."""
    labels = check_texts(labels, what)
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):
        check_printable(label, what)
        split_synonyms(label)
        key = label.strip().lower()
        if key in seen:
            raise LabelError(f"duplicate {what} {label!r} (positions {seen[key]} and {index})")
        seen[key] = index
    return labels


def check_phrases(phrases: Sequence[str] | str) -> list[str]:
    """A non-empty list of printable, non-blank phrases (repeats are allowed: each is grounded)."""
    phrases = check_texts(phrases, "phrase")
    for phrase in phrases:
        check_printable(phrase, "phrase")
    return phrases


__all__ = ["check_labels", "check_phrases", "check_printable", "check_texts", "split_synonyms"]
