"""The predictions file of a box-classification run: a header naming the run, then one JSON line per annotation.

The header (``{"fgdense_boxclass_predictions": {...}}``) gives the annotation file, the model's content
fingerprint, the protocol, the text mask and the precision; each later line an annotation's ids, its box
(xyxy) and its top-5 category ids with their cosines, or ``skipped`` with the reason. It is written whole
at the end of a run from the per-image records (:mod:`fgdense.evaluation.runs`), which are what a rerun
resumes from.
"""

from __future__ import annotations

import json

HEADER_KEY = "fgdense_boxclass_predictions"


def dump(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


__all__ = ["HEADER_KEY", "dump"]
