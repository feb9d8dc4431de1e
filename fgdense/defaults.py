"""The patch budget each job runs at unless told otherwise: in the library, the tools and the demo alike.

Written once here, so the same box gets the same numbers from ``BoxClassifier``, ``tools/classify_boxes.py``
and the demo's Label boxes tab; with the checks of the settings the tools read (a patch budget, a
threshold). Light on purpose: the tools read it before torch is imported.

* Segmentation wants fine score maps: ``"auto"`` (16384 patches on a GPU, as FG-CLIP 2's dense demo; 1024
  on a CPU).
* Boxes, masks and grounding take the checkpoint's own processing (``None``; ``--max-patches checkpoint``):
  the released checkpoints' dynamic 128 to 1024 patches, as the official box-classification evaluation.
"""

from __future__ import annotations

import math

from .errors import FGDenseError

MAX_PATCHES = 16384  # the largest budget fgdense runs: FG-CLIP 2's dense demo, 2048x2048 pixels at patch 16
GPU_DEFAULT_PATCHES = 16384
CPU_DEFAULT_PATCHES = 1024  # seconds, not minutes, per image on a laptop CPU


def check_budget(value, what: str = "max_num_patches") -> int:
    """A patch budget as an int from 1 to :data:`MAX_PATCHES`, or :class:`FGDenseError` naming it.

    Bounded above because a budget is work: attention over N patches is N^2, and 10^8 patches would
    exhaust any machine's memory long before it finished.
    """
    try:
        budget = int(value)
        valid = budget == float(value) and not isinstance(value, bool)
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid or not 1 <= budget <= MAX_PATCHES:
        raise FGDenseError(f"{what} must be a whole number from 1 to {MAX_PATCHES} (2048x2048 pixels at patch 16), "
                           f"got {value!r}")
    return budget


def as_number(value) -> float:
    """``value`` as a float, NaN for anything that is not a number (strings of numbers count; booleans do not)."""
    if isinstance(value, bool):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def check_threshold(threshold):
    """``"auto"``, ``None`` (also spelt ``"none"``) or a finite cosine."""
    if threshold == "auto" or threshold is None:
        return threshold
    if threshold == "none":
        return None
    value = as_number(threshold)
    if not math.isfinite(value):
        raise FGDenseError(f"threshold must be a finite number, 'auto' or None, got {threshold!r}")
    return value


DENSE_MAX_PATCHES = "auto"  # Segmenter, tools/segment.py, the demo's Segment tab
REGION_MAX_PATCHES = None  # BoxClassifier, MaskClassifier, Grounder, their tools, the demo's boxes and Ground tabs


def max_patches_flag(value) -> str:
    """A ``max_num_patches`` setting as ``--max-patches`` spells it (``None`` is ``checkpoint``)."""
    return "checkpoint" if value is None else str(value)


__all__ = ["CPU_DEFAULT_PATCHES", "DENSE_MAX_PATCHES", "GPU_DEFAULT_PATCHES", "MAX_PATCHES", "REGION_MAX_PATCHES",
           "as_number", "check_budget", "check_threshold", "max_patches_flag"]
