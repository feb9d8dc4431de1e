"""FineHARD-format stage-2 data: records read and validated up front, images loaded lazily.

A FineHARD annotation file is JSON (a list of records) or JSONL (one record a line); a folder means
every ``*.json`` / ``*.jsonl`` in it. A record::

    {"f_path": "000/123.jpg", "caption": "<long caption>", "short_caption": "<short caption>",
     "is_cn": false,
     "bbox_info": [{"bbox": [x1, y1, x2, y2],            # normalised to [0, 1], xyxy
                    "short_expr": "red mug", "long_expr": "a red mug on the desk",
                    "flag_short_neg": 1, "short_expr_negs": ["blue mug", ... 10 captions]}]}

``f_path`` is relative to the English or the Chinese image root (``is_cn``; when absent, a caption with
CJK characters counts as Chinese) and may not lead outside it (``..``, an absolute path).

The collator (:mod:`fgdense.train.collate`) and the monolingual batch sampler
(:mod:`fgdense.train.sampler`) serve every dataset type.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import FineHARDError, ImageLoadError
from ..paths import path_inside
from ..processing.image import load_image
from .collate import TOKEN_CACHE_SIZE, FineHARDCollator, finehard_collate
from .records import Record, text_key
from .sampler import MonolingualBatchSampler
from .segmentations import mask_on_grid

# Names this module has long been imported for (tests, configs, users' scripts).
__all__ = ["TOKEN_CACHE_SIZE", "FineHARDCollator", "FineHARDDataset", "FineHARDError", "MonolingualBatchSampler",
           "Record", "annotation_files", "finehard_collate", "mask_on_grid", "parse_record", "read_annotations",
           "text_key"]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# Normalised coordinates may overshoot [0, 1] by rounding; more than this is an annotation error.
_BOX_SLACK = 1e-3


def annotation_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The JSON/JSONL files named by ``paths`` (files, or folders scanned for *.json / *.jsonl)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
            if not found:
                raise FineHARDError(f"annotation folder {path} holds no .json or .jsonl files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FineHARDError(f"annotation file {path} does not exist")
    if not files:
        raise FineHARDError("no annotation files given")
    return files


def read_annotations(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: JSON nested too deeply to parse
        raise FineHARDError(f"cannot read annotation file {path}: {str(err)[:200]}") from None
    if isinstance(data, dict):
        data = data.get("annotations", data.get("data"))
    if not isinstance(data, list):
        raise FineHARDError(f"{path} must hold a list of records (or JSONL, one record a line)")
    return data


def parse_record(raw, where: str, image_root: Path, image_root_cn: Path, num_negatives: int,
                 box_text: str, max_boxes: int | None) -> Record:
    """One validated :class:`Record`; any problem raises :class:`FineHARDError` naming ``where``."""
    if not isinstance(raw, dict):
        raise FineHARDError(f"{where}: a record must be a JSON object, got {type(raw).__name__}")
    for key in ("f_path", "caption", "short_caption"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise FineHARDError(f"{where}: missing or empty {key!r}")
    is_cn = bool(raw["is_cn"]) if "is_cn" in raw else bool(_CJK.search(raw["caption"] + raw["short_caption"]))
    infos = raw.get("bbox_info") or []
    if not isinstance(infos, list):
        raise FineHARDError(f"{where}: 'bbox_info' must be a list")
    boxes, texts, hard_boxes, hard_texts = [], [], [], []
    for j, info in enumerate(infos[:max_boxes] if max_boxes else infos):
        box = _check_box(info.get("bbox") if isinstance(info, dict) else None, f"{where} box {j}")
        text = info.get(box_text) or info.get("short_expr")
        if not isinstance(text, str) or not text:
            raise FineHARDError(f"{where} box {j}: missing {box_text!r} text")
        boxes.append(box)
        texts.append(text)
        if info.get("flag_short_neg"):
            negatives = info.get("short_expr_negs")
            positive = info.get("short_expr")
            if not isinstance(positive, str) or not positive:
                raise FineHARDError(f"{where} box {j}: flag_short_neg is set but 'short_expr' is missing")
            if not isinstance(negatives, list) or len(negatives) < num_negatives or \
                    not all(isinstance(n, str) and n for n in negatives[:num_negatives]):
                raise FineHARDError(f"{where} box {j}: flag_short_neg is set but 'short_expr_negs' does not hold "
                                    f"{num_negatives} non-empty captions")
            hard_boxes.append(box)
            hard_texts.append([positive] + negatives[:num_negatives])
    image_path = path_inside(image_root_cn if is_cn else image_root, raw["f_path"])
    if image_path is None:  # never opened: a record names images under its root only
        raise FineHARDError(f"{where}: 'f_path' {raw['f_path']!r} leads outside the image root")
    return Record(image_path, raw["caption"], raw["short_caption"], is_cn,
                  np.asarray(boxes, dtype=np.float32).reshape(-1, 4), texts,
                  np.asarray(hard_boxes, dtype=np.float32).reshape(-1, 4), hard_texts)


def _check_box(box, where: str) -> list[float]:
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise FineHARDError(f"{where}: 'bbox' must be 4 numbers [x1, y1, x2, y2] normalised to [0, 1], got {box!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise FineHARDError(f"{where}: 'bbox' has a non-numeric coordinate: {box!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise FineHARDError(f"{where}: 'bbox' has a non-finite coordinate: {box!r}")
    if min(x1, y1, x2, y2) < -_BOX_SLACK or max(x1, y1, x2, y2) > 1 + _BOX_SLACK:
        raise FineHARDError(f"{where}: 'bbox' {box!r} is not normalised to [0, 1]")
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    if x2 <= x1 or y2 <= y1:
        raise FineHARDError(f"{where}: 'bbox' {box!r} is inverted or has zero area")
    return [x1, y1, x2, y2]


class FineHARDDataset(Dataset):
    """FineHARD records, validated when built (with a progress bar), images loaded lazily.

    ``dataset[i]`` (or ``dataset[(i, epoch)]``, as :class:`MonolingualBatchSampler` yields) is a dict
    with the PIL ``image`` and the record; an image that is missing or unreadable gives
    ``{"skipped": path}`` instead, which the collator drops and counts.
    """

    def __init__(self, ann_file, image_root=".", image_root_cn=None, num_negatives: int = 10,
                 box_text: str = "long_expr", max_boxes: int | None = 8, progress: bool = True):
        self.num_negatives = num_negatives
        image_root = Path(image_root)
        image_root_cn = Path(image_root_cn) if image_root_cn is not None else image_root
        self.records: list[Record] = []
        files = annotation_files(ann_file)
        for path in files:
            raws = read_annotations(path)
            for index, raw in enumerate(tqdm(raws, desc=f"checking {path.name}", disable=not progress,
                                             unit="record", leave=False)):
                self.records.append(parse_record(raw, f"{path} record {index}", image_root, image_root_cn,
                                                 num_negatives, box_text, max_boxes))
        if not self.records:
            raise FineHARDError(f"no records in {', '.join(map(str, files))}")
        self.files = files
        # A wrong image root would otherwise skip every image and "train" on nothing.
        for language, root in (("Chinese", image_root_cn), ("English", image_root)):
            used = any(r.is_cn == (language == "Chinese") for r in self.records)
            if used and not root.is_dir():
                raise FineHARDError(f"image root for the {language} records {root} is not a folder")
        self.is_cn = np.array([r.is_cn for r in self.records], dtype=bool)
        # mmengine's Runner hands this to its visualizer.
        self.metainfo = {"dataset": "FineHARD", "records": len(self.records), "chinese": int(self.is_cn.sum())}

    def __len__(self) -> int:
        return len(self.records)

    def __deepcopy__(self, memo):
        # Read-only once built and checked: mmengine deep-copies the dataloader settings that hold it,
        # and a copy of every record would only cost memory.
        return self

    def summary(self) -> str:
        boxes = sum(len(r.boxes) for r in self.records)
        return (f"FineHARD {', '.join(map(str, self.files))}: {len(self.records)} records "
                f"({int(self.is_cn.sum())} Chinese), {boxes} boxes")

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, None)
        record = self.records[index]
        try:
            image = load_image(record.image_path)
        except ImageLoadError as err:
            return {"skipped": str(record.image_path), "reason": str(err), "epoch": epoch}
        return {"image": image, "record": record, "epoch": epoch}


