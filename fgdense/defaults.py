"""The patch budget each job runs at unless told otherwise: in the library, the tools and the demo alike.

Written once here, so the same box gets the same numbers from ``BoxClassifier``, ``tools/classify_boxes.py``
and the demo's Label boxes tab. Light on purpose: the tools read it before torch is imported.

* Segmentation wants fine score maps: ``"auto"`` (16384 patches on a GPU, as FG-CLIP 2's dense demo; 1024
  on a CPU).
* Boxes, masks and grounding take the checkpoint's own processing (``None``; ``--max-patches checkpoint``):
  the released checkpoints' dynamic 128 to 1024 patches, as the official box-classification evaluation.
"""

from __future__ import annotations

DENSE_MAX_PATCHES = "auto"  # Segmenter, tools/segment.py, the demo's Segment tab
REGION_MAX_PATCHES = None  # BoxClassifier, MaskClassifier, Grounder, their tools, the demo's boxes and Ground tabs


def max_patches_flag(value) -> str:
    """A ``max_num_patches`` setting as ``--max-patches`` spells it (``None`` is ``checkpoint``)."""
    return "checkpoint" if value is None else str(value)


__all__ = ["DENSE_MAX_PATCHES", "REGION_MAX_PATCHES", "max_patches_flag"]
