"""An evaluation as a job on the bulk runner: each image's outcome is a small JSON record, the report a
reduction of all of them.

Every evaluation (box classification, segmentation, grounding) is a :class:`RecordJob` handed to
:func:`fgdense.bulk.runner.run`, the pipeline the bulk tools run on. So an evaluation gets what they get:
this process's share of the images under ``torchrun``, DataLoader workers that decode ahead, batches of
equal patch count for the task users call (``BoxClassifier``, ``Segmenter``, ``Grounder``), unusable
files counted by reason and listed, and the one resume rule: an image is done when its record exists and
carries the hash of the present run (settings, model content, image path, boxes, ground truth); the same
command again skips it, ``overwrite`` redoes it. The report is reduced from the records in dataset order,
so a sharded, an interrupted-and-resumed and a one-go run report the same numbers.

Images are decoded as stored (no EXIF rotation): dataset boxes, masks and label maps refer to the stored
pixels, as the official evaluations read them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from ..bulk.distributed import Ranks, barrier, current, gather
from ..bulk.jobs import RUN_KEY, Job, Prepared, Preparer, outputs_complete, run_hash
from ..bulk.runner import RunOptions, claim_folder, run
from ..checkpoint import fingerprint
from ..dense import process_image, resolve_budget
from ..errors import DatasetError, FGDenseError, ImageLoadError
from ..io.files import write_json
from ..io.sources import Item, path_key
from ..processing.image import decode_as_stored
from .boxclass_data import BoxClassDataset, image_path, load_boxclass_dataset

RECORDS = "records"  # the per-image records' folder inside an evaluation's output folder


def box_dataset_inputs(annotations, images_dir, workers: int, max_images: int | None):
    """(dataset, images folder) of a box-annotated evaluation (box classification, grounding), checked:
    ``annotations`` a :class:`BoxClassDataset` or its file; a missing folder or a negative count is one
    clear error before any work."""
    dataset = annotations if isinstance(annotations, BoxClassDataset) else load_boxclass_dataset(annotations)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(f"images folder {images_dir} does not exist")
    if workers < 0 or (max_images is not None and max_images < 0):
        raise FGDenseError("workers must be >= 0 and max_images >= 0")
    return dataset, images_dir


def dataset_item(index: int, images_dir: Path, file_name: str, boxes=None, where: str = "") -> Item:
    """A dataset image as a run's item: named by its place in the dataset; a name leading outside
    ``images_dir`` (``..``, an absolute path) is never opened."""
    path = image_path(images_dir, file_name)
    if path is None:
        return Item(index, None, str(index), "", boxes, where,
                    ("outside_images", f"{file_name} is outside the images folder"))
    return Item(index, path, str(index), path_key(path), boxes, where)


class DatasetItems:
    """A dataset's images as the bulk runner's sources: ``make()`` yields the items afresh each time."""

    def __init__(self, make: Callable[[], Iterator[Item]]):
        self.make = make

    def items(self, output_files=None, reserved=()) -> Iterator[Item]:
        return self.make()


def read_record(path: Path, run: str, count: int | None = None) -> dict | None:
    """The record at ``path`` if the run ``run`` wrote it whole (``count`` outcomes, when given), else None."""
    if not outputs_complete([path], run):
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    outcomes = record.get("outcomes") if isinstance(record, dict) else None
    if not isinstance(outcomes, list) or (count is not None and len(outcomes) != count):
        return None  # a record cut short (or of other boxes) is no outcome: the image is evaluated again
    return record


@dataclass
class RecordPreparer(Preparer):
    """The worker side of an evaluation: skip images whose record is complete, decode the rest as stored.

    ``truth`` maps an image index to what its ground truth is (a label map's path and size, say): part of
    its run hash, so a changed ground truth is evaluated again. :meth:`check` is each evaluation's own
    look at the decoded image (boxes, label map); what it returns travels to the job as ``extra``.
    """

    truth: dict | None = None

    def run_of(self, item: Item) -> str:
        truth = "" if self.truth is None else str(self.truth.get(item.index, ""))
        return run_hash(self.settings + "\0" + truth, item)

    def record_path(self, item: Item) -> Path:
        return self.out / f"{item.name}.json"

    def outcome_count(self, item: Item) -> int | None:
        return None if item.boxes is None else len(item.boxes)

    def done(self, item: Item) -> dict | None:
        if item.problem is not None:
            return None
        return read_record(self.record_path(item), self.run_of(item), self.outcome_count(item))

    def check(self, item: Item, image: Image.Image):
        return None

    def _prepare(self, item: Item) -> Prepared:
        if item.problem is not None:
            return Prepared(item, "bad", reason=item.problem[0], detail=item.problem[1])
        run = self.run_of(item)
        if not self.overwrite and self.done(item) is not None:
            return Prepared(item, "skipped", run)
        if not item.path.is_file():
            return Prepared(item, "bad", run, reason="missing_image", detail=f"{item.path} does not exist")
        try:
            # Rebuilt from the array, the image carries no EXIF a later step could rotate it by.
            rgb = Image.fromarray(decode_as_stored(item.path))
        except ImageLoadError as err:
            return Prepared(item, "bad", run, reason="unreadable_image", detail=str(err))
        try:
            extra = self.check(item, rgb)
        except FGDenseError as err:  # an error may say what to count it under (segmentation_data.GroundTruthError)
            return Prepared(item, "bad", run, reason=getattr(err, "reason", "bad_ground_truth"), detail=str(err))
        except Exception as err:  # noqa: BLE001  one image's ground truth a library fails on is not a stop
            return Prepared(item, "bad", run, reason="bad_ground_truth", detail=f"{type(err).__name__}: {err}")
        ready = process_image(self.processor, rgb, self.cap)
        return Prepared(item, "ready", run, ready, item.boxes, extra=extra)


class RecordJob(Job):
    """An evaluation's work on one image: the task on it (:meth:`compute`), its outcomes as a record.

    Subclasses set ``kind`` and ``preparer_class`` and write :meth:`compute` and :meth:`outcomes`.
    """

    kind = "evaluate"
    preparer_class = RecordPreparer

    def __init__(self, task, out, truth: dict | None = None, **kwargs):
        # A test double without a model has no device: its budget is the CPU's.
        cap = resolve_budget(task.settings.max_num_patches, getattr(task.model, "device", "cpu"))
        super().__init__(task, out, pictures=False, cap=cap, **kwargs)
        self.truth = truth
        self.bad: dict[int, tuple[str, str]] = {}

    def suffixes(self) -> tuple[str, ...]:
        return (".json",)

    def preparer_fields(self) -> dict:
        return {}

    def preparer(self, overwrite: bool = False) -> RecordPreparer:
        return self.preparer_class(self.task.processor, self.cap, Path(self.out), self.suffixes(),
                                   json.dumps(self.settings(), sort_keys=True, default=str), overwrite,
                                   truth=self.truth, **self.preparer_fields())

    def outcomes(self, prepared: Prepared, result) -> list:
        raise NotImplementedError

    def write(self, prepared: Prepared, result) -> None:
        record = {RUN_KEY: prepared.run, "image": str(prepared.item.path), "outcomes": self.outcomes(prepared, result)}
        write_json(Path(self.out) / f"{prepared.item.name}.json", record)

    def note_bad(self, item: Item, reason: str, detail: str) -> None:
        self.bad[item.index] = (reason, detail)


@dataclass
class Evaluated:
    """What a run left: per item (in dataset order) its record, or why it has none (``bad``)."""

    items: list[Item]
    records: dict[int, dict]
    bad: dict[int, tuple[str, str]]
    summary: dict

    def outcomes(self) -> Iterator[tuple[Item, list | None, tuple[str, str] | None]]:
        """(item, its outcomes or None, (reason, detail) or None) for every item of the run."""
        for item in self.items:
            record = self.records.get(item.index)
            yield item, None if record is None else record["outcomes"], self.bad.get(item.index)


@contextmanager
def records_folder(out, ranks: Ranks, overwrite: bool = False):
    """The folder the records go to: ``out/records``, or (no ``out``) a temporary folder rank 0 makes,
    shares with the other ranks and removes at the end.

    ``out`` itself is locked and claimed for an evaluation while the records are made: the run on the
    records locks and claims ``out/records`` only, and a bulk tool's outputs share names with the
    evaluation's own files (an image report.jpg gives report.json), so a segmentation into an
    evaluation's folder, or an evaluation into a folder of segmentations, stops in one line before it
    writes (``overwrite`` replaces them, as for the bulk tools)."""
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        lock = claim_folder(Path(out), ranks, "evaluation", overwrite)
        try:
            folder = Path(out) / RECORDS
            folder.mkdir(parents=True, exist_ok=True)
            yield folder
        finally:
            if lock is not None:
                lock.release()
        return
    made = tempfile.mkdtemp(prefix="fgdense-eval-") if ranks.main else None
    folder = Path(gather(made)[0])
    try:
        yield folder
    finally:
        barrier()
        if ranks.main:
            shutil.rmtree(folder, ignore_errors=True)


def evaluate_items(job: RecordJob, make_items: Callable[[], Iterator[Item]], *, workers: int = 0,
                   overwrite: bool = False, progress: bool = True, status=None, ranks: Ranks | None = None) -> Evaluated:
    """Run ``job`` over the items on the bulk runner (this process's share), then read every record back.

    Every process returns the same :class:`Evaluated`: the records of the whole run, done by this run or
    an earlier one, and the images no process could use.
    """
    ranks = current() if ranks is None else ranks
    folder = getattr(job.task.model, "checkpoint_folder", None)
    job.fingerprint = fingerprint(folder) if folder else ""
    items = list(make_items())
    settings = job.task.settings
    options = RunOptions(out=Path(job.out), workers=workers, batch_size=settings.batch_size,
                         max_batch_tokens=settings.max_batch_tokens, overwrite=overwrite, progress=progress,
                         total=len(items))
    summary = run(job, DatasetItems(lambda: iter(items)), options, ranks, status)
    bad: dict[int, tuple[str, str]] = {}
    for part in gather(job.bad):
        bad.update(part)
    preparer = job.preparer()
    records = {}
    for item in items:
        record = preparer.done(item)
        if record is not None:
            records[item.index] = record
    return Evaluated(items, records, bad, summary)


__all__ = ["DatasetItems", "Evaluated", "RECORDS", "RecordJob", "RecordPreparer", "dataset_item", "evaluate_items",
           "read_record", "records_folder"]
