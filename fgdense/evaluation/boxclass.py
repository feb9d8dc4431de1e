"""Box-classification evaluation (BoxClass-CN, COCO, LVIS) with the protocols of FG-CLIP 2's published numbers.

It measures :class:`~fgdense.classify.BoxClassifier`, the class users run: each image at the classifier's
patch budget (the checkpoint's own processing by default, as the published numbers), each annotated box
(COCO xywh -> xyxy pixels) pooled by RoIAlign from one dense pass over its image, its cosine to every
category's text embedding (made by the dataset's protocol, :mod:`fgdense.evaluation.protocols`) deciding
top-1 / top-5. The images go through the bulk runner (:mod:`fgdense.evaluation.runs`): workers, ``torchrun``
shards and the bulk tools' resume rule; each image's outcomes are a record in ``OUT/records``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..bulk.distributed import current
from ..classify import BoxClassifier
from ..errors import BoxError, FGDenseError
from ..io.files import write_all, write_text
from ..model.boxes import validate_boxes
from ..prompts import EncodedLabels, TextEncoder
from . import predictions as pred
from .boxclass_data import BoxClassDataset, load_boxclass_dataset
from .boxclass_report import Tally, build_report, format_report
from .protocols import Protocol, choose_protocol, custom_protocol
from .runs import box_dataset_inputs, Evaluated, RecordJob, RecordPreparer, dataset_item, evaluate_items, records_folder

TOP_K = 5


def category_embeddings(classifier: BoxClassifier, dataset: BoxClassDataset, protocol: Protocol,
                        progress: bool = False) -> torch.Tensor:
    """(K, D) normalised text embeddings of the dataset's categories by ``protocol``, with the classifier's
    model, tokenizer and text mask (no cache: LVIS makes 96k prompts, each used once)."""
    encoder = TextEncoder(classifier.model, classifier.tokenizer, "box", lowercase=protocol.lowercase,
                          text_mask=classifier.settings.text_mask, cache=False)
    return encoder.group_embeddings([protocol.prompts(name) for _, name in dataset.categories], progress=progress)


class BoxPreparer(RecordPreparer):
    """Checks every box against its image: a degenerate one is skipped alone, the others are scored."""

    def check(self, item, image):
        valid, errors = [], {}
        for i, box in enumerate(item.boxes):
            try:
                validate_boxes(np.asarray(box).reshape(1, 4), (image.height, image.width))
                valid.append(i)
            except BoxError as err:
                errors[i] = str(err)
        return valid, errors


class BoxClassJob(RecordJob):
    """One image: :meth:`BoxClassifier.classify_batch` on its valid boxes; outcomes = each box's top-5
    category ids and cosines, or why it was skipped."""

    kind = "box classification"
    preparer_class = BoxPreparer

    def __init__(self, task: BoxClassifier, out, labels: EncodedLabels, category_ids: list, protocol: str,
                 prompts: str = ""):
        super().__init__(task, out)
        self.labels, self.category_ids = labels, category_ids
        # ``prompts``: the digest of every category's prompts (names, templates, case), so a category renamed
        # in the annotation file, or another prompts file under the same name, makes every record stale.
        self.extra_settings = {"protocol": protocol, "categories": [str(c) for c in category_ids],
                               "prompts": prompts}

    def compute(self, group):
        boxes = [np.asarray(p.boxes, dtype=np.float64)[p.extra[0]].reshape(-1, 4) for p in group]
        return self.task.classify_batch([p.image for p in group], boxes, self.labels, top_k=TOP_K)

    def outcomes(self, prepared, result):
        valid, errors = prepared.extra
        out = [{"skipped": "degenerate_box", "detail": errors.get(i, "")} for i in range(len(prepared.boxes))]
        for row, i in enumerate(valid):
            top = result.top_k[row].tolist()
            out[i] = {"top5": [self.category_ids[j] for j in top],
                      "scores": [round(float(result.cosine[row, j]), 6) for j in top]}
        return out


def prompts_digest(dataset: BoxClassDataset, protocol: Protocol) -> str:
    """A digest of what the category embeddings are made from: each category's id and its prompts as
    the protocol writes them (lower-casing included)."""
    prompts = [[cid, [p.lower() if protocol.lowercase else p for p in protocol.prompts(name)]]
               for cid, name in dataset.categories]
    text = json.dumps(prompts, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def content_digest(path) -> str:
    """The BLAKE2b digest of a file's bytes ("" without a file): what a predictions file was computed from."""
    if not path:
        return ""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _protocol(protocol: str | Protocol, prompts, dataset) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if prompts is not None:
        if protocol != "auto":
            raise FGDenseError("give either a protocol or a prompts file, not both")
        return custom_protocol(prompts)
    return choose_protocol(protocol, dataset)


def _as_classifier(classifier) -> BoxClassifier:
    """The classifier to measure; a bare model is measured as ``BoxClassifier(model)`` at fp32, the
    arithmetic of the published numbers."""
    return classifier if isinstance(classifier, BoxClassifier) else BoxClassifier(classifier, precision="fp32")


def image_records(dataset: BoxClassDataset, evaluated: Evaluated) -> dict[int, list[dict]]:
    """Per image index, one predictions-file line per annotation: its ids, box and outcome (or skip reason)."""
    images = {image.index: image for image in dataset.images}
    found = {}
    for item, outcomes, bad in evaluated.outcomes():
        image = images[item.index]
        if outcomes is None and bad is None:
            continue  # not reached (an interrupted run): not counted
        lines = []
        for i, ann in enumerate(image.annotations):
            base = {"image_id": image.image_id, "annotation_id": ann.annotation_id, "category_id": ann.category_id}
            if outcomes is None:
                reason = bad[0] if bad[0] in ("missing_image", "unreadable_image", "outside_images") else "failed"
                lines.append(dict(base, skipped=reason, detail=bad[1]))
            elif "skipped" in outcomes[i]:
                lines.append(dict(base, **outcomes[i]))
            else:
                lines.append(dict(base, bbox=[round(v, 2) for v in ann.bbox], **outcomes[i]))
        found[item.index] = lines
    return found


def evaluate_box_classification(classifier, annotations, images_dir, *, out=None, protocol: str | Protocol = "auto",
                                prompts=None, workers: int = 0, max_images: int | None = None,
                                overwrite: bool = False, progress: bool = True, status=None) -> dict:
    """Box-classification accuracy of ``classifier`` (a :class:`BoxClassifier`, or a model, measured as
    ``BoxClassifier(model, precision="fp32")``) on a COCO-format annotation file; returns the report.

    ``annotations`` is a path (or a :class:`BoxClassDataset`); image files are looked up under
    ``images_dir`` (names leading outside it are skipped and counted). ``protocol``: ``auto``,
    ``boxclass-cn``, ``coco`` or ``lvis``; ``prompts``: a file of one's own templates instead. The
    classifier's settings say how images are processed (``max_num_patches``: None, the checkpoint's own,
    is the published protocol), its ``precision``, ``text_mask`` and ``batch_size`` (images per pass).
    ``workers`` decode images ahead. ``out`` (a folder) keeps each image's record in ``out/records`` and
    the merged ``out/predictions.jsonl``; a later call with the same settings skips the images already
    recorded (``overwrite`` redoes them). ``max_images``: only the file's first images (the report then
    says ``complete: false``). Under ``torch.distributed`` every rank calls this; images are sharded and
    every rank returns the same report. Accuracies are fractions in [0, 1]. ``status`` (a
    :class:`fgdense.cli.Status`) counts finished images, for the line an interruption prints.
    """
    dataset, images_dir = box_dataset_inputs(annotations, images_dir, workers, max_images)
    task = _as_classifier(classifier)
    chosen = _protocol(protocol, prompts, dataset)
    ranks = current()
    category_ids = [cid for cid, _ in dataset.categories]
    labels = EncodedLabels([name for _, name in dataset.categories],
                           category_embeddings(task, dataset, chosen, progress and ranks.main))
    images = dataset.images[:max_images] if max_images is not None else dataset.images

    def items():
        for image in images:
            where = f"image {image.image_id!r} of {dataset.source or 'the annotations'}"
            boxes = np.array([a.bbox for a in image.annotations], dtype=np.float64).reshape(-1, 4)
            yield dataset_item(image.index, images_dir, image.file_name, boxes, where)

    with records_folder(out, ranks, overwrite) as folder:
        job = BoxClassJob(task, folder, labels, category_ids, chosen.name, prompts_digest(dataset, chosen))
        job.model_name = str(getattr(task.model, "name_or_path", ""))
        evaluated = evaluate_items(job, items, workers=workers, overwrite=overwrite, progress=progress,
                                   status=status, ranks=ranks)
        found = image_records(dataset, evaluated)
    settings = task.settings
    header = {"annotations": str(Path(dataset.source).resolve()) if dataset.source else "",
              "annotations_content": content_digest(dataset.source), "prompts": job.extra_settings["prompts"],
              "model": job.fingerprint, "protocol": chosen.name, "text_mask": settings.text_mask,
              "precision": settings.precision, "max_num_patches": settings.max_num_patches or "checkpoint"}
    if out is not None and ranks.main:
        lines = [pred.dump({pred.HEADER_KEY: header})] + [pred.dump(r) for i in sorted(found) for r in found[i]]
        write_all([(Path(out) / "predictions.jsonl", write_text("".join(lines)))])
    tally = Tally(dataset.categories)
    for index in sorted(found):
        tally.add_image(found[index])
    meta = {"annotations_file": dataset.source, "images_dir": str(images_dir),
            "model": job.model_name, "model_fingerprint": job.fingerprint, "protocol": chosen.name,
            "protocol_description": chosen.describe(), "text_mask": settings.text_mask,
            "precision": settings.precision, "max_num_patches": settings.max_num_patches or "checkpoint"}
    return build_report(dataset, tally, meta)


__all__ = ["BoxClassJob", "category_embeddings", "evaluate_box_classification", "format_report",
           "load_boxclass_dataset"]
