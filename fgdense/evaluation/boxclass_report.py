"""Counting box-classification outcomes (across ranks) and turning the counts into a report and a table.

Accuracies in the JSON report are fractions in [0, 1] (as every fgdense evaluation report); the printed
table shows percentages. The report also keeps the top-1 confusion counts (``confusion``: true category
id -> predicted category id -> annotations, non-zero cells only), so a picture of what is mistaken for
what (:mod:`fgdense.evaluation.plots`) needs the report alone.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

import torch

from ..errors import printable
from .boxclass_data import SKIP_REASONS, BoxClassDataset


class Tally:
    """Counts per category (scored, top-1 correct, top-5 correct), the top-1 confusion matrix (row = true
    category, column = predicted), skips by reason, images done."""

    def __init__(self, categories):
        self.index = {cid: i for i, (cid, _) in enumerate(categories)}
        self.per_category = torch.zeros(len(categories), 3, dtype=torch.int64)
        # Sparse, (true index, predicted index) -> annotations: memory follows the boxes scored, not the
        # categories squared (100k categories would make a dense matrix of 80 GB).
        self.confusion: Counter = Counter()
        self.skips = torch.zeros(len(SKIP_REASONS), dtype=torch.int64)
        self.images = torch.zeros(1, dtype=torch.int64)

    def add(self, record: dict) -> None:
        if "skipped" in record:
            self.skips[SKIP_REASONS.index(record["skipped"])] += 1
            return
        truth = self.index[record["category_id"]]
        row = self.per_category[truth]
        row[0] += 1
        self.confusion[truth, self.index[record["top5"][0]]] += 1
        row[1] += int(record["top5"][0] == record["category_id"])
        row[2] += int(record["category_id"] in record["top5"])

    def add_image(self, records: list[dict]) -> None:
        self.images += 1
        for record in records:
            self.add(record)


def fraction(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def build_report(dataset: BoxClassDataset, tally: Tally, meta: dict) -> dict:
    skips = {reason: int(n) for reason, n in zip(SKIP_REASONS, tally.skips.tolist())}
    for reason, n in dataset.skipped.items():
        skips[reason] += n
    scored, top1, top5 = (int(v) for v in tally.per_category.sum(0).tolist())
    per_category = {}
    for (cid, name), (n, c1, c5) in zip(dataset.categories, tally.per_category.tolist()):
        per_category[str(cid)] = {"name": name, "evaluated": n, "top1": fraction(c1, n), "top5": fraction(c5, n),
                                  "top1_correct": c1, "top5_correct": c5}
    images_done = int(tally.images.item())
    return {
        **meta,
        "top1": fraction(top1, scored),
        "top5": fraction(top5, scored),
        "evaluated": scored,
        "top1_correct": top1,
        "top5_correct": top5,
        "annotations": dataset.num_annotations,
        "skipped": skips,
        "skipped_total": sum(skips.values()),
        "images": len(dataset.images),
        "images_done": images_done,
        "complete": images_done == len(dataset.images),
        "categories": len(dataset.categories),
        "image_entries_sharing_a_file": dataset.shared_files,
        "per_category": per_category,
        "confusion": sparse_confusion(tally.confusion, [str(cid) for cid, _ in dataset.categories]),
    }


def sparse_confusion(matrix, row_keys, column_keys=None) -> dict:
    """A confusion matrix as JSON: row key -> column key -> count, non-zero cells only (LVIS-sized
    matrices are almost all zeros). ``matrix`` is dense (an array) or sparse (a mapping of (row, column)
    index pairs to counts); cells come in row-major order either way."""
    column_keys = row_keys if column_keys is None else column_keys
    if isinstance(matrix, dict):
        cells = ((i, j, n) for (i, j), n in sorted(matrix.items()) if n)
    else:
        cells = ((i, j, matrix[i][j]) for i, j in torch.as_tensor(matrix).nonzero().tolist())
    rows = {}
    for i, j, n in cells:
        rows.setdefault(row_keys[i], {})[column_keys[j]] = int(n)
    return rows


def display_width(text: str) -> int:
    """Terminal columns of a string: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def percent(value) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def with_unit(value) -> str:
    """A fraction as percent with its sign, or n/a (no annotation scored) without one."""
    return "n/a" if value is None else f"{percent(value).strip()} %"


def format_report(report: dict, max_categories: int = 40) -> str:
    """A printable table: the summary, skips by reason, and per-category accuracy (worst first when cut)."""
    lines = [
        f"box classification: {printable(report.get('annotations_file', ''))}",
        f"  protocol {report.get('protocol', '?')}, text mask {report.get('text_mask', '?')}",
        f"  top-1 {with_unit(report['top1'])}   top-5 {with_unit(report['top5'])}   "
        f"({report['evaluated']} of {report['annotations']} annotations scored, "
        f"{report['images_done']}/{report['images']} images{'' if report['complete'] else ', INCOMPLETE'})",
        f"  skipped {report['skipped_total']}: " + ", ".join(f"{k} {v}" for k, v in report["skipped"].items()),
    ]
    if report.get("image_entries_sharing_a_file"):
        lines.append(f"  {report['image_entries_sharing_a_file']} image entries name a file an earlier entry "
                     "names (each scored as its own image)")
    rows = [(cid, c) for cid, c in report["per_category"].items() if c["evaluated"]]
    if rows:
        shown = rows
        if len(rows) > max_categories:
            shown = sorted(rows, key=lambda r: (r[1]["top1"], -r[1]["evaluated"]))[:max_categories]
            lines.append(f"  per category (the {max_categories} worst top-1 of {len(rows)}; all in the JSON report):")
        else:
            lines.append("  per category:")
        names = {cid: printable(c["name"]) for cid, c in shown}  # escaped before the columns are measured
        width = max(display_width(name) for name in names.values())
        lines.append(f"    {'id':>8}  {'name' + ' ' * (width - 4)}  {'n':>6}  {'top-1%':>6}  {'top-5%':>6}")
        for cid, c in shown:
            name = names[cid] + " " * (width - display_width(names[cid]))
            lines.append(f"    {cid:>8}  {name}  {c['evaluated']:>6}  {percent(c['top1'])}  {percent(c['top5'])}")
    return "\n".join(lines)


__all__ = ["Tally", "build_report", "format_report", "fraction", "sparse_confusion"]
