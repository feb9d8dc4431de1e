"""What each tool does to one image, cut into the three places a bulk run does it.

* :meth:`Preparer.prepare` runs in a DataLoader worker: it checks whether the image's outputs are already
  complete (then the image is skipped), decodes the image, checks its boxes and processes it for the
  dense pass. It holds no model, only the image processor and the patch cap.
* :meth:`Job.compute` runs in the model's process: the task on a group of prepared images.
* :meth:`Job.write` runs in the writer thread: pictures rendered, files written all-or-nothing.

Every image's JSON output starts with ``"run"``: a hash of what its outputs depend on (the job's
settings, the model's content, the image's path, size and modification time, and its boxes). An image
counts as done only when all its files exist and its JSON carries the hash of the present run, so a rerun
with other labels, another model or an image replaced in place redoes it, and one with the same settings
skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dense import ProcessedImage, process_image
from ..devices import auto_precision
from ..errors import BoxError, ImageLoadError
from ..io.output_names import output_suffixes
from ..io.outputs import (RUN_KEY, header, write_box_classification, write_grounding,
                          write_segmentation)
from ..io.sources import Item
from ..model.boxes import validate_boxes
from ..processing.image import load_image

_HEAD_BYTES = 4096  # the run hash is the JSON's first entry: this much of the file always holds it


def file_stamp(path) -> str:
    """What stands for a file's content in a run hash: its size and modification time (in ns), so an image
    replaced in place is done again. Read from the file's metadata only: deciding to skip an image reads
    none of its pixels. "" for a file that is not there."""
    if path is None:
        return ""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def run_hash(settings: str, item: Item) -> str:
    """The hash an image's JSON carries: the run's settings, the image's path, its content's stamp
    (:func:`file_stamp`) and its boxes."""
    boxes = "" if item.boxes is None else json.dumps(np.asarray(item.boxes).tolist())
    text = "\0".join([settings, item.key, file_stamp(item.path), boxes])
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def outputs_complete(paths, run: str) -> bool:
    """Whether every output file exists and the JSON among them was written by the run ``run``."""
    paths = [Path(p) for p in paths]
    if not all(p.is_file() for p in paths):
        return False
    json_path = next(p for p in paths if p.suffix == ".json")
    try:
        with open(json_path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError:
        return False
    return f'"{RUN_KEY}": "{run}"'.encode() in head


@dataclass
class Prepared:
    """One item back from a worker: ``state`` is "ready" (``image`` processed), "skipped" (outputs complete)
    or "bad" (``reason`` and ``detail`` say why); ``seconds`` the worker's time on it."""

    item: Item
    state: str
    run: str = ""
    image: ProcessedImage | None = None
    boxes: np.ndarray | None = None
    reason: str = ""
    detail: str = ""
    seconds: float = 0.0
    extra: object = None  # what a job's own preparer hands its compute step (an evaluation's box checks)


@dataclass
class Preparer:
    """The worker side of a job: no model, only what deciding, decoding and processing need."""

    processor: object
    cap: int | None
    out: Path
    suffixes: tuple[str, ...]
    settings: str
    overwrite: bool = False
    boxes: str = "ignore"  # "ignore", "optional" (grounding candidates) or "required" (box classification)

    def output_files(self, name: str) -> list[str]:
        return [name + suffix for suffix in self.suffixes]

    def prepare(self, item: Item) -> Prepared:
        start = time.perf_counter()
        prepared = self._prepare(item)
        prepared.seconds = time.perf_counter() - start
        return prepared

    def _prepare(self, item: Item) -> Prepared:
        if item.problem is not None:
            return Prepared(item, "bad", reason=item.problem[0], detail=item.problem[1])
        run = run_hash(self.settings, item)
        if not self.overwrite and outputs_complete([self.out / f for f in self.output_files(item.name)], run):
            return Prepared(item, "skipped", run)
        if self.boxes == "required" and item.boxes is None:
            return Prepared(item, "bad", run, reason="no_boxes", detail=f"{item.where} gives no boxes")
        if item.path.exists() and not item.path.is_file():  # a FIFO named by a manifest: reading it waits forever
            return Prepared(item, "bad", run, reason="not_a_file", detail=f"{item.path} is not a regular file")
        try:
            rgb = load_image(item.path)
        except ImageLoadError as err:
            reason = "missing" if not item.path.exists() else "unreadable"
            return Prepared(item, "bad", run, reason=reason, detail=str(err))
        boxes = None
        if self.boxes != "ignore" and item.boxes is not None:
            try:
                validate_boxes(item.boxes, (rgb.height, rgb.width))
            except BoxError as err:
                return Prepared(item, "bad", run, reason="bad_boxes", detail=str(err))
            boxes = item.boxes
        try:
            ready = process_image(self.processor, rgb, self.cap)
        except Exception as err:  # noqa: BLE001  an image the processor cannot cut up is one bad file, not a stop
            return Prepared(item, "bad", run, reason="unprocessable", detail=f"{type(err).__name__}: {err}")
        return Prepared(item, "ready", run, ready, boxes)


@dataclass
class Job:
    """A tool's work on one image; subclasses: :class:`SegmentJob`, :class:`ClassifyJob`, :class:`GroundJob`.

    ``task`` is the task object (its model on its device); ``out`` the output folder; ``pictures`` whether
    pictures are written beside the JSON; ``font`` the pictures' lettering; ``model_name`` the ``--model``
    given (written into every JSON); ``fingerprint`` the model's content hash (part of the run hash).
    """

    task: object
    out: Path
    pictures: bool = True
    font: object = None
    model_name: str = ""
    fingerprint: str = ""
    cap: int | None = None
    extra_settings: dict = field(default_factory=dict)

    kind = "job"
    boxes = "ignore"

    def suffixes(self) -> tuple[str, ...]:
        return output_suffixes(self.kind, self.pictures)

    def output_files(self, name: str) -> list[str]:
        return [name + suffix for suffix in self.suffixes()]

    def settings(self) -> dict:
        """What the outputs depend on, besides the image (hashed into every JSON's ``run``)."""
        import dataclasses

        # Batch sizes say how, not what, is computed; the precision is replaced by the arithmetic it means.
        task_settings = {k: v for k, v in dataclasses.asdict(self.task.settings).items()
                         if k not in ("batch_size", "max_batch_tokens", "precision", "max_num_patches")}
        return {"job": self.kind, "model": self.fingerprint or self.model_name, "cap": self.cap,
                "arithmetic": _arithmetic(self.task), **task_settings, **self.extra_settings}

    def header(self, prepared: Prepared) -> dict:
        """The image's JSON header: the run hash first, the image, its size, the settings (io.outputs)."""
        return header(prepared.item.path, prepared.image.image, self.task, self.model_name, prepared.run)

    def preparer(self, overwrite: bool = False) -> Preparer:
        return Preparer(self.task.processor, self.cap, Path(self.out), self.suffixes(),
                        json.dumps(self.settings(), sort_keys=True, default=str), overwrite, self.boxes)

    def categories(self) -> list[str]:
        raise NotImplementedError

    def compute(self, group: list[Prepared]) -> list:
        raise NotImplementedError

    def write(self, prepared: Prepared, result) -> None:
        raise NotImplementedError

    def coco_annotations(self, payload: dict) -> tuple[tuple[int, int], list[dict]]:
        """(height, width) of the image and its COCO annotations (without ids), from its JSON output."""
        raise NotImplementedError

    def note_bad(self, item: Item, reason: str, detail: str) -> None:
        """Told of every image the run could not use (evaluations count them per image); nothing by default."""


def _arithmetic(task) -> str:
    """The arithmetic the task's model runs in: ``auto`` resolves as :func:`fgdense.devices.auto_precision`
    does, so a rerun that spells the same computation differently still finds its outputs."""
    precision, model = task.settings.precision, task.model
    if model is None:  # a test double that computes without a model
        return "none"
    if precision == "auto":
        precision = auto_precision(model.device, model.dtype)
    if precision in ("bf16", "fp16"):
        return f"{precision} autocast"
    return str(model.dtype).replace("torch.", "")


def xywh(xyxy, size_hw) -> list[float]:
    """A COCO box of an xyxy box clipped to the image of (height, width): the COCO file says what the model
    saw (a box may reach past the image, [0, 0, 1e300, 1e300] say, whose area would be no JSON number)."""
    height, width = size_hw
    x1, x2 = (min(max(float(v), 0.0), float(width)) for v in xyxy[0::2])
    y1, y2 = (min(max(float(v), 0.0), float(height)) for v in xyxy[1::2])
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


class SegmentJob(Job):
    """tools/segment.py: the four outputs of :func:`fgdense.io.outputs.write_segmentation` per image."""

    kind = "segment"

    def __init__(self, task, out, labels, **kwargs):
        super().__init__(task, out, **kwargs)
        self.labels = list(labels)
        self.extra_settings = {"labels": self.labels}

    def categories(self) -> list[str]:
        return self.labels

    def compute(self, group):
        return self.task.segment_batch([p.image for p in group], self.labels)

    def write(self, prepared, result):
        write_segmentation(prepared.image.image, result, self.out, prepared.item.name, self.header(prepared),
                           font=self.font, pictures=self.pictures)

    def coco_annotations(self, payload):
        from pycocotools import mask as mask_utils

        annotations = []
        for segment in payload["segments"]:
            if not segment["area"]:
                continue
            rle = segment["rle"]
            box = mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
            annotations.append({"category_id": segment["class_id"] + 1, "segmentation": rle,
                                "area": segment["area"], "bbox": [round(float(v), 2) for v in box],
                                "score": segment["mean_score"], "iscrowd": 0})
        return tuple(payload["image_size_hw"]), annotations


class ClassifyJob(Job):
    """tools/classify_boxes.py: per image ``NAME.json`` (every box's labels) and ``NAME.png``."""

    kind = "classify"
    boxes = "required"

    def __init__(self, task, out, labels, **kwargs):
        super().__init__(task, out, **kwargs)
        self.labels = list(labels)
        self.extra_settings = {"labels": self.labels}

    def categories(self):
        return self.labels

    def compute(self, group):
        return self.task.classify_batch([p.image for p in group], [p.boxes for p in group], self.labels)

    def write(self, prepared, result):
        write_box_classification(prepared.image.image, result, self.out, prepared.item.name, self.header(prepared),
                                 font=self.font, pictures=self.pictures)

    def coco_annotations(self, payload):
        index = {label: k for k, label in enumerate(payload["labels"])}
        annotations = []
        for box in payload["boxes"]:
            area = xywh(box["xyxy"], payload["image_size_hw"])
            annotations.append({"category_id": index[box["label"]] + 1, "bbox": area,
                                "area": round(area[2] * area[3], 2), "score": box["probability"],
                                "cosine": box["cosine"], "iscrowd": 0})
        return tuple(payload["image_size_hw"]), annotations


class GroundJob(Job):
    """tools/ground.py: per image ``NAME.json`` (every phrase's box) and ``NAME.png``."""

    kind = "ground"
    boxes = "optional"

    def __init__(self, task, out, phrases, **kwargs):
        super().__init__(task, out, **kwargs)
        self.phrases = list(phrases)
        self.extra_settings = {"phrases": self.phrases}

    def categories(self):
        return self.phrases

    def compute(self, group):
        # Images with candidate boxes and images without are two kinds of call.
        results = [None] * len(group)
        with_boxes = [i for i, p in enumerate(group) if p.boxes is not None]
        without = [i for i, p in enumerate(group) if p.boxes is None]
        if with_boxes:
            found = self.task.ground_batch([group[i].image for i in with_boxes], self.phrases,
                                           boxes=[group[i].boxes for i in with_boxes])
            for i, result in zip(with_boxes, found):
                results[i] = result
        if without:
            for i, result in zip(without, self.task.ground_batch([group[i].image for i in without], self.phrases)):
                results[i] = result
        return results

    def write(self, prepared, result):
        write_grounding(prepared.image.image, result, self.out, prepared.item.name, self.header(prepared),
                        font=self.font, pictures=self.pictures)

    def coco_annotations(self, payload):
        annotations = []
        for p, phrase in enumerate(payload["phrases"]):
            if phrase.get("box") is None:
                continue
            area = xywh(phrase["box"], payload["image_size_hw"])
            annotations.append({"category_id": p + 1, "bbox": area, "area": round(area[2] * area[3], 2),
                                "score": phrase["score"], "iscrowd": 0})
        return tuple(payload["image_size_hw"]), annotations


__all__ = ["ClassifyJob", "GroundJob", "Job", "Prepared", "Preparer", "RUN_KEY", "SegmentJob", "output_suffixes",
           "file_stamp", "outputs_complete", "run_hash"]
