"""The demo page's jobs on the tasks, with no web code: what each button does, testable on its own.

One model, one image processor, one tokenizer and one :class:`~fgdense.demo.cache.FeatureCache` serve
a :class:`~fgdense.segment.Segmenter`, a :class:`~fgdense.classify.BoxClassifier` and a
:class:`~fgdense.ground.Grounder`, each at the patch budget its tool takes by default
(:mod:`fgdense.defaults`), so a box gets the numbers ``tools/classify_boxes.py`` gives it; an image's
dense features are computed once per budget and reused while labels, phrases, boxes and thresholds
change. Results are written by the tools' own writers (:mod:`fgdense.io.outputs`: the same files, the same
JSON) into a fresh folder per run (:mod:`fgdense.demo.workdir`), from which the page offers them.

Everything a person can get wrong (no image, an unreadable or too large one, empty labels, control
characters, bad boxes) is an :class:`~fgdense.errors.FGDenseError`; :func:`~fgdense.demo.answers.guarded`
turns it into the one line the page shows.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..classify import BoxClassifier
from ..config import ARCHITECTURES
from ..dense import resolve_budget
from ..errors import FGDenseError, LabelError
from ..ground import Grounder
from ..io.box_pictures import draw_boxes, short_caption
from ..io.fonts import choose_font
from ..io.outputs import header, write_box_classification, write_grounding, write_segmentation
from ..processing.processor import FGCLIP2Processor
from ..prompts import check_labels
from ..segment import Segmenter
from .answers import (BoxesAnswer, GroundAnswer, SegmentAnswer, boxes_table, glyph_note, ground_table, guarded,
                      segment_table)
from .cache import DEFAULT_CAPACITY, FeatureCache, cached_task, image_digest
from .explorer import DenseExplorer
from .fields import MAX_LABELS, add_corner, boxes_from_text, boxes_text, split_labels, split_phrases
from .uploads import MAX_PIXELS, MAX_UPLOAD_BYTES, Uploads, file_stem, need_image
from .workdir import WorkDir

Progress = Callable[[float, str], None]
TASK_DEFAULTS = "task defaults"  # max_num_patches of a DemoEngine: each tab at its tool's default budget
STOP_WAIT_S = 600  # how long stopping waits for a running job (a 16384-patch pass on a CPU takes minutes)


def _quiet(fraction: float, text: str) -> None:
    pass


def released_size(config) -> str | None:
    """The released FG-CLIP 2 size (base, large, so400m) a config has, or None (tiny, random, custom)."""
    vision = config.vision_config
    for name, arch in ARCHITECTURES.items():
        if name != "tiny" and (vision.hidden_size, vision.num_hidden_layers) == (arch.hidden, arch.layers):
            return name
    return None


class DemoEngine(DenseExplorer):
    """The page's jobs on one model: segment, label boxes, ground, explore dense features.

    ``max_num_patches``: by default each of the first three jobs runs at its tool's default budget
    (:mod:`fgdense.defaults`: ``auto`` for Segment, the checkpoint's own for Label boxes and Ground); a
    budget given runs all three at it (and so shares their features). The explorer picks its own from
    :attr:`budget_choices`. Output files go into ``work_dir`` (default: a new temporary folder), one folder
    per run. Jobs run one at a time: they share the model and the CPU. :meth:`close` waits for the running
    job, refuses new ones and removes the folder.
    """

    def __init__(self, model, processor=None, tokenizer=None, *, max_num_patches=TASK_DEFAULTS,
                 precision: str = "auto", text_mask: str = "tokenizer", font: str | None = None,
                 cache_capacity: int = DEFAULT_CAPACITY, work_dir=None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_pixels: int = MAX_PIXELS, name: str | None = None):
        self.model = model
        # Resolved once: the three tasks must hold the same processor, which the cache key includes.
        processor = FGCLIP2Processor.for_model(model, processor, tokenizer)
        self.cache = FeatureCache(cache_capacity)
        common = dict(feature_cache=self.cache, precision=precision, text_mask=text_mask)
        if max_num_patches != TASK_DEFAULTS:
            common["max_num_patches"] = max_num_patches
        self.segmenter = cached_task(Segmenter)(model, processor, **common)
        self.classifier = cached_task(BoxClassifier)(model, processor, **common)
        self.grounder = cached_task(Grounder)(model, processor, **common)
        self.name = name or getattr(model, "name_or_path", type(model).__name__)
        self.font = font
        self.uploads = Uploads(max_upload_bytes, max_pixels)
        self.files = WorkDir(work_dir)
        self._lock = threading.Lock()  # one job at a time: they share the model (and, on a CPU, every core)
        self._closed = False

    @classmethod
    def from_pretrained(cls, name_or_path, device=None, dtype=None, **options) -> "DemoEngine":
        from ..model import FGCLIP2Model

        model = FGCLIP2Model.from_pretrained(name_or_path, device="auto" if device is None else device, dtype=dtype)
        return cls(model, FGCLIP2Processor.from_pretrained(name_or_path), name=str(name_or_path), **options)

    # ------------------------------------------------------------------------------------ facts for the page
    @property
    def device(self):
        return self.model.device

    @property
    def work_dir(self) -> Path:
        return self.files.path

    @property
    def max_upload_bytes(self) -> int:
        return self.uploads.max_upload_bytes

    @property
    def budgets(self) -> dict[str, int | None]:
        """Each tab's patch budget on this device (None: the checkpoint's own processing)."""
        tasks = {"Segment": self.segmenter, "Label boxes": self.classifier, "Ground": self.grounder}
        return {tab: resolve_budget(task.settings.max_num_patches, self.device) for tab, task in tasks.items()}

    @property
    def budget(self) -> int | None:
        """The Segment tab's patch budget (the explorer starts at it)."""
        return self.budgets["Segment"]

    @property
    def released(self) -> str | None:
        return released_size(self.model.config)

    @property
    def auto_threshold(self) -> float | None:
        return self.segmenter.auto_threshold()

    def notice(self) -> str:
        """What the page says about the model it runs (Markdown), with a warning for a random one."""
        groups: dict[str, list[str]] = {}
        for tab, budget in self.budgets.items():
            groups.setdefault(budget_text(budget), []).append(tab)
        at = "; ".join(f"{' and '.join(tabs)} at {text}" for text, tabs in groups.items())
        size = f"FG-CLIP 2 {self.released}" if self.released else "not a released FG-CLIP 2 size"
        text = f"Model **{self.name}** ({size}) on **{self.device}**, image features: {at}."
        if not self.released:
            text += ("\n\n**This checkpoint is tiny or random: the page shows the format of the results, not "
                     "the model.** For real results start the demo with a released checkpoint, e.g. "
                     "`--model qihoo360/fg-clip2-base`.")
        return text

    # ------------------------------------------------------------------------------------------ inputs
    def image(self, path) -> Image.Image:
        """The uploaded image at ``path`` as RGB (EXIF rotation applied), after the size limits."""
        return self.uploads.image(path)

    def boxes_file(self, path) -> str:
        """A boxes JSON file (as ``tools/classify_boxes.py`` reads it) as the text of the boxes field."""
        return self.uploads.boxes_file(path)

    def view(self, path) -> Path:
        """A file of the uploaded image as the jobs see it (EXIF rotation applied), for the page to show
        and take clicks on: click coordinates are then pixels of the image the jobs read."""
        image = self.image(path)
        return self.files.view(image_digest(image), lambda: image)

    def preview_boxes(self, path, text: str | None) -> Path:
        """A file of the image with the boxes of the boxes field drawn and numbered (the image alone when
        there are none)."""
        image = self.image(path)
        boxes = boxes_from_text(text, required=False)
        if boxes is None or not len(boxes):
            return self.view(path)

        def draw():
            import supervision as sv

            detections = sv.Detections(xyxy=boxes.astype(np.float32), class_id=np.arange(len(boxes)))
            return draw_boxes(image, detections, [f"#{i + 1}" for i in range(len(boxes))], font=self.font)

        key = hashlib.blake2b(f"{image_digest(image)}:{boxes.tolist()}".encode(), digest_size=16).hexdigest()
        return self.files.view(key, draw)

    # -------------------------------------------------------------------------------------------- jobs
    def segment(self, path, labels: str, background: str = "", threshold="auto", refine: bool = False,
                progress: Progress = _quiet) -> SegmentAnswer:
        """Segment the image into the labels: overlay, heatmaps, palette label map, JSON and a table."""
        need_image(path)  # the first thing to say when nothing is uploaded yet
        labels = split_labels(labels)
        background_labels = split_labels(background, "background label") if (background or "").strip() else []
        if len(labels) > MAX_LABELS:
            raise LabelError(f"at most {MAX_LABELS} labels fit a palette label map, got {len(labels)}")
        check_labels(labels + background_labels, "label (including background labels)")
        overrides = dict(threshold=threshold, background_labels=tuple(background_labels), refine=bool(refine))
        with self._job():
            image, lettering, before = self._start(path, labels, self.segmenter, progress)
            result = self.segmenter.segment(image, labels, **overrides)
            progress(0.7, "drawing the pictures")
            paths = write_segmentation(image, result, self.files.run_folder("segment"), file_stem(path),
                                       self._header(path, image, self.segmenter, **overrides), font=lettering)
        threshold = "none" if result.threshold is None else f"{result.threshold:.3f}"
        message = (f"{len(labels)} label(s) at {budget_text(self.budgets['Segment'])}; threshold {threshold}; "
                   f"{self._reuse_text(before)}{glyph_note(lettering)}")
        return SegmentAnswer(paths["overlay"], paths["heatmaps"], paths["label_map"], paths["json"],
                             segment_table(result), message)

    def classify(self, path, boxes: str, labels: str, top_k: int = 5, progress: Progress = _quiet) -> BoxesAnswer:
        """Label the boxes of the boxes field: the labelled picture, a top-k table and the JSON."""
        need_image(path)  # the first thing to say when nothing is uploaded yet
        labels = split_labels(labels)
        array = boxes_from_text(boxes)
        top_k = max(1, min(int(top_k), len(labels)))
        with self._job():
            image, lettering, before = self._start(path, labels, self.classifier, progress)
            result = self.classifier.classify(image, array, labels, top_k=top_k)
            progress(0.7, "drawing the picture")
            paths = write_box_classification(image, result, self.files.run_folder("boxes"), file_stem(path),
                                             self._header(path, image, self.classifier, top_k=top_k), font=lettering)
        headers, table = boxes_table(result, top_k)
        message = (f"{len(array)} box(es), {len(labels)} label(s) at {budget_text(self.budgets['Label boxes'])}; "
                   f"{self._reuse_text(before)}{glyph_note(lettering)}")
        return BoxesAnswer(paths["picture"], paths["json"], table, headers, message)

    def ground(self, path, phrases: str, boxes: str = "", progress: Progress = _quiet) -> GroundAnswer:
        """Ground the phrases: among the boxes of the boxes field when it has any, else in proposed boxes."""
        need_image(path)  # the first thing to say when nothing is uploaded yet
        phrases = split_phrases(phrases)
        array = boxes_from_text(boxes, required=False)
        with self._job():
            image, lettering, before = self._start(path, [short_caption(p) for p in phrases], self.grounder, progress)
            result = self.grounder.ground(image, phrases, boxes=array)
            progress(0.7, "drawing the pictures")
            paths = write_grounding(image, result, self.files.run_folder("ground"), file_stem(path),
                                    self._header(path, image, self.grounder), font=lettering, heatmaps=True)
        mode = f"among {len(array)} candidate box(es)" if array is not None else "in boxes proposed from the heatmaps"
        message = (f"{len(phrases)} phrase(s) grounded {mode} at {budget_text(self.budgets['Ground'])}; "
                   f"{self._reuse_text(before)}{glyph_note(lettering)}")
        return GroundAnswer(paths["picture"], paths["heatmaps"], paths["json"], ground_table(result), message)

    # -------------------------------------------------------------------------------------------- helpers
    @contextlib.contextmanager
    def _job(self):
        """One job at a time, and none once the demo is stopping (asked before and after waiting for the lock)."""
        stopping = FGDenseError("the demo is stopping; start it again to go on")
        if self._closed:
            raise stopping
        with self._lock:
            if self._closed:
                raise stopping
            yield

    def _start(self, path, texts, task, progress: Progress, budget=None):
        """A job's first steps: the image, the lettering its texts need, the cache count before its features."""
        progress(0.02, "reading the image")
        image = self.image(path)
        lettering = choose_font(texts, self.font, warn=False)
        budget = budget_text(resolve_budget(task.settings.max_num_patches, self.device) if budget is None else budget)
        progress(0.1, f"image features ({budget}; reused if this image was seen at this budget)")
        return image, lettering, self.cache.computed

    def _header(self, path, image, task, **overrides) -> dict:
        return header(Path(path).name, image, task, self.name, **overrides)

    def _reuse_text(self, before: int) -> str:
        return "image features computed" if self.cache.computed > before else "image features reused"

    def busy(self) -> bool:
        """Whether a job is running now."""
        return self._lock.locked()

    def stop(self) -> None:
        """Refuse new jobs (each says so in one line); the running one goes on."""
        self._closed = True

    def close(self, timeout: float = STOP_WAIT_S) -> bool:
        """Refuse new jobs, wait up to ``timeout`` seconds for the running one, remove the output folder
        (the page's files are gone with it). Returns whether no job was left running."""
        self.stop()
        finished = self._lock.acquire(timeout=timeout)
        try:
            self.files.remove()
        finally:
            if finished:
                self._lock.release()
        return finished


def budget_text(budget: int | None) -> str:
    return f"{budget} patches" if budget else "the checkpoint's own patch budget"


__all__ = ["DemoEngine", "TASK_DEFAULTS", "add_corner", "boxes_from_text", "boxes_text", "guarded", "released_size",
           "split_labels", "split_phrases"]
