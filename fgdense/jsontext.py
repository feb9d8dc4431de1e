"""JSON a user gave (manifests, boxes, annotation files, a checkpoint's config): one loader for every reader.

Python's parser raises ``RecursionError`` on text nested a thousand levels deep, and its integers have no
size, so a box of 400 digits overflows wherever it meets a float. Every reader of user JSON goes through
:func:`parse_json` (or :func:`read_json_file`) and checks numbers with :func:`json_number` or
:func:`finite_number`, so such text is one clear error naming its source. This module sits on the ground
floor, beside ``errors``, because the checkpoint config (``fgdense.config``) is read below the io layer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import FGDenseError


def parse_json(text: str, source: str, error: type[FGDenseError] = FGDenseError, *, broken: str = "is not valid JSON"):
    """The value of JSON ``text``, or ``error`` naming ``source`` (a file, a line) and what is wrong
    (``broken`` says how a syntax error is worded)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{source} is nested too deeply to be read as JSON") from None
    except ValueError as err:  # a syntax error, or an integer past Python's digit limit
        raise error(f"{source} {broken}: {str(err)[:200]}") from None


def read_json_file(path, source: str, error: type[FGDenseError] = FGDenseError):
    """A UTF-8 JSON file's value; a file that cannot be read, decoded or parsed is ``error`` naming ``source``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{source} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{source} is not readable JSON: {err}") from None
    return parse_json(text, source, error, broken="is not readable JSON")


def json_number(value) -> float | None:
    """``value`` as a float, or None when it is no number: a bool is not one (``true`` would read as 1), nor
    an integer too large for a float (a 400-digit coordinate). NaN and infinities (JSON's ``NaN``,
    ``1e400``) are numbers here: box checks refuse them by name."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def finite_number(value) -> float | None:
    """``value`` as a finite float, or None (see :func:`json_number`; NaN and infinities are None too)."""
    number = json_number(value)
    return number if number is not None and math.isfinite(number) else None


__all__ = ["finite_number", "json_number", "parse_json", "read_json_file"]
