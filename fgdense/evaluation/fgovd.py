"""FG-OVD (fine-grained open-vocabulary detection) with the protocol of FG-CLIP 2's published numbers
(``eval/fgovd_bbox_roi.py``).

The file is JSONL, one box per line: ``img_path`` (under the images folder), ``bbox`` [x, y, w, h],
``pos_expression`` and ``neg_expression`` (lists of texts). The box's region embedding is
:class:`~fgdense.classify.BoxClassifier`'s (RoIAlign on the dense features, the checkpoint's own
processing by default); its texts, positives then negatives, are lower-cased and embedded with the
``box`` walk (64 tokens); the probabilities are softmax(100 * cos). The box is right when the first text's
probability is the highest (a tie counts as right). Accuracy is per file: the benchmark's difficulty
splits are separate files. The lines of one image share one backbone pass; images go through the bulk
runner, a record per image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..bulk.distributed import current
from ..classify import BoxClassifier
from ..errors import DatasetError
from ..jsontext import parse_json
from ..paths import missing_file_reason
from ..io.files import write_all, write_text
from ..prompts import TextEncoder
from ..regions import PROBABILITY_SCALE, cosine
from .boxclass import BoxPreparer
from .embedding_runs import bad_counts, checked_inputs
from .runs import RecordJob, dataset_item, evaluate_items, records_folder


PREDICTIONS = "predictions.jsonl"  # in the output folder: one line per box, in file order


@dataclass
class FGOVDLine:
    image: str
    xyxy: list[float]
    texts: list[str]  # positives, then negatives
    positives: int = 1  # how many of the texts are positives


def load_fgovd(path) -> list[FGOVDLine]:
    """The file's lines, checked: a line that is not a box with texts is one error naming it."""
    path = Path(path)
    reason = missing_file_reason(path)
    if reason:
        raise DatasetError(f"annotation file {path} {reason}")
    lines = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        msg = parse_json(raw, f"{path} line {number}", DatasetError)  # nested too deeply: one line too
        try:
            x, y, w, h = (float(v) for v in msg["bbox"])
            positives, negatives = list(msg["pos_expression"]), list(msg["neg_expression"])
            image = str(msg["img_path"])
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"{path} line {number}: expected JSON with img_path, bbox [x, y, w, h], "
                               f"pos_expression and neg_expression lists ({type(err).__name__}: {err})") from None
        if not positives or not all(isinstance(t, str) and t.strip() for t in positives + negatives):
            raise DatasetError(f"{path} line {number}: needs at least one positive text, and no blank text")
        lines.append(FGOVDLine(image, [x, y, x + w, y + h], positives + negatives, len(positives)))
    if not lines:
        raise DatasetError(f"{path} holds no boxes")
    return lines


class FGOVDJob(RecordJob):
    """One image: region embeddings of its boxes by :meth:`BoxClassifier.region_features`, each scored
    against its own texts; outcome per box: right or not, the first text's probability, the best text's
    index and probability (how far the first was beaten: the worst cases a picture shows)."""

    kind = "fg-ovd"
    preparer_class = BoxPreparer

    def __init__(self, task: BoxClassifier, out, texts: dict[int, list[list[str]]], truth: dict):
        super().__init__(task, out, truth=truth)
        self.texts = texts
        self.encoder = TextEncoder(task.model, task.tokenizer, "box", lowercase=True,
                                   text_mask=task.settings.text_mask, cache=False)

    def compute(self, group):
        boxes = [np.asarray(p.boxes, dtype=np.float64)[p.extra[0]].reshape(-1, 4) for p in group]
        regions = self.task.region_features([p.image for p in group], boxes)
        results = []
        for prepared, region in zip(group, regions):
            per_box = [self.texts[prepared.item.index][i] for i in prepared.extra[0]]
            flat = self.encoder.prompt_embeddings([t for texts in per_box for t in texts]) if per_box else None
            outcomes, start = [], 0
            for row, texts in enumerate(per_box):
                cos = cosine(region[row : row + 1], flat[start : start + len(texts)])[0]
                start += len(texts)
                probability = torch.softmax(PROBABILITY_SCALE * cos, dim=-1)
                best = int(probability.argmax())
                outcomes.append({"right": bool(torch.equal(probability.max(), probability[0])),
                                 "first": round(float(probability[0]), 6), "best": best,
                                 "best_prob": round(float(probability[best]), 6)})
            results.append(outcomes)
        return results

    def outcomes(self, prepared, result):
        valid, errors = prepared.extra
        out = [{"skipped": "degenerate_box", "detail": errors.get(i, "")} for i in range(len(prepared.boxes))]
        for outcome, i in zip(result, valid):
            out[i] = outcome
        return out


def evaluate_fgovd(classifier, annotations, images_dir, *, out=None, workers: int = 0, max_images=None,
                   overwrite: bool = False, progress: bool = True, status=None) -> dict:
    """FG-OVD accuracy of ``classifier`` (a :class:`BoxClassifier`, or a model measured at fp32) on one
    JSONL file; returns the report (``accuracy`` a fraction, and the counts). ``out`` keeps a record per
    image, so the same call again skips the images done, and ``predictions.jsonl``: per box (file line)
    whether it was right, the first text's probability, the best text's index and probability (``right``,
    ``first``, ``best``, ``best_prob``; ``skipped`` with the reason instead). ``max_images``: only
    the file's first images."""
    task = classifier if isinstance(classifier, BoxClassifier) else BoxClassifier(classifier, precision="fp32")
    images_dir = checked_inputs(images_dir, workers, max_images)
    lines = load_fgovd(annotations)
    by_image: dict[str, list[int]] = {}
    for number, line in enumerate(lines):
        by_image.setdefault(line.image, []).append(number)
    names = list(by_image)[:max_images]
    texts = {i: [lines[n].texts for n in by_image[name]] for i, name in enumerate(names)}
    truth = {i: json.dumps(t, ensure_ascii=False) for i, t in texts.items()}

    def items():
        for index, name in enumerate(names):
            boxes = np.array([lines[n].xyxy for n in by_image[name]], dtype=np.float64).reshape(-1, 4)
            yield dataset_item(index, images_dir, name, boxes, f"image {name!r} of {annotations}")

    ranks = current()
    with records_folder(out, ranks, overwrite) as folder:
        job = FGOVDJob(task, folder, texts, truth)
        job.model_name = str(getattr(task.model, "name_or_path", ""))
        evaluated = evaluate_items(job, items, workers=workers, overwrite=overwrite, progress=progress,
                                   status=status, ranks=ranks)
    right = scored = skipped_boxes = 0
    missing, per_line = {}, {}
    for item, outcomes, bad in evaluated.outcomes():
        if outcomes is None:
            missing[item.index] = bad or ("not_reached", "")
            for number in by_image[names[item.index]]:
                per_line[number] = {"line": number + 1, "skipped": missing[item.index][0]}
            continue
        for number, outcome in zip(by_image[names[item.index]], outcomes):
            per_line[number] = {"line": number + 1, **outcome}
            if "skipped" in outcome:
                skipped_boxes += 1
            else:
                scored += 1
                right += outcome["right"]
    if out is not None and ranks.main:
        rows = [json.dumps(per_line[n], ensure_ascii=False) + "\n" for n in sorted(per_line)]
        write_all([(Path(out) / PREDICTIONS, write_text("".join(rows)))])
    boxes_missing = sum(len(texts[i]) for i in missing)
    return {"accuracy": right / scored if scored else None, "boxes": scored, "right": right,
            "boxes_skipped": skipped_boxes + boxes_missing, "images": len(names) - len(missing),
            "images_skipped": len(missing), "skipped_by_reason": bad_counts(missing),
            "annotations_file": str(annotations), "images_dir": str(images_dir), "model": job.model_name,
            "model_fingerprint": job.fingerprint, "precision": task.settings.precision,
            "text_mask": task.settings.text_mask, "max_num_patches": task.settings.max_num_patches or "checkpoint",
            "complete": max_images is None or max_images >= len(by_image)}


def format_fgovd_report(report: dict) -> str:
    accuracy = "-" if report["accuracy"] is None else f"{100 * report['accuracy']:.2f}"
    skipped = f", {report['boxes_skipped']} box(es) skipped" if report["boxes_skipped"] else ""
    return f"FG-OVD: accuracy {accuracy} on {report['boxes']} boxes of {report['images']} images{skipped}"


__all__ = ["FGOVDJob", "evaluate_fgovd", "format_fgovd_report", "load_fgovd"]
