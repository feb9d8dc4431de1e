"""The demo page's four jobs on the tasks, with no web code: what each button does, testable on its own.

One model, one image processor, one tokenizer and one :class:`~fgdense.demo.cache.FeatureCache` serve
a :class:`~fgdense.segment.Segmenter`, a :class:`~fgdense.classify.BoxClassifier` and a
:class:`~fgdense.ground.Grounder` at one patch budget, so an image's dense features are computed once
and reused by every tab while labels, phrases, boxes and thresholds change. Results are rendered with
the tools' own pictures (:mod:`fgdense.io.segment_pictures`, :mod:`fgdense.io.box_pictures`) and
written with the tools' writers into a fresh folder per run, from which the page offers them for
download.

Everything a person can get wrong (no image, an unreadable or too large one, empty labels, control
characters, bad boxes) is an :class:`~fgdense.errors.FGDenseError`; :func:`guarded` turns it into the one
line the page shows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..classify import BoxClassifier
from ..cli import one_line
from ..config import ARCHITECTURES, MAX_PATCHES
from ..dense import resolve_budget
from ..errors import BoxError, FGDenseError, ImageLoadError, LabelError
from ..ground import Grounder
from ..io.box_pictures import draw_boxes, score_labels
from ..io.files import write_all, write_picture, write_text
from ..io.fonts import REPLACEMENT, choose_font
from ..io.inputs import parse_boxes, read_boxes_file
from ..io.outputs import write_segmentation
from ..io.segment_pictures import heatmap_grid
from ..processing.image import load_image
from ..processing.processor import FGCLIP2Processor
from ..prompts import check_labels, check_phrases
from ..segment import BACKGROUND, SegmentationResult, Segmenter
from .cache import DEFAULT_CAPACITY, FeatureCache, cached_task, image_digest

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 40 * 2**20  # a phone photo is 3-12 MB; beyond this an upload is a mistake or an attack
MAX_PIXELS = 40_000_000  # decoded RGB at 40 MP is 120 MB; dense features never need more than 2048x2048
MAX_TEXT_CHARS = 4000  # per text field: hundreds of labels, far more than a picture can show
MAX_LABELS = 255  # the palette label map's limit
MAX_BOXES = 500
KEEP_RUNS = 24  # run folders kept for download; older ones are removed
KEEP_VIEWS = 64  # pictures of uploads and of drawn boxes the page shows
CAPTION_CHARS = 40  # long phrases are shortened on pictures (tables and JSON keep them whole)
BUDGET_CHOICES = (256, 576, 1024, 2304, 4096, 9216, MAX_PATCHES)
CPU_BUDGET_LIMIT = 4096  # 16384 patches is minutes per image for a released model on a CPU

# Spaces that separate labels: the ASCII one and the ideographic one a Chinese keyboard types. Not tabs or
# other control characters: those stay inside a label, where the label check names them.
SPACE_CHARS = " \u3000"
SPACES = r"[ \u3000]+"

Progress = Callable[[float, str], None]


def _quiet(fraction: float, text: str) -> None:
    pass


# --------------------------------------------------------------------------------------------- text fields
def split_labels(text: str | None, what: str = "label") -> list[str]:
    """The labels typed into one field: separated by commas or new lines when the text has any, else by
    spaces, so ``电脑 cat`` is two labels and ``red mug, 咖啡杯`` two more; ``cat|猫`` keeps its synonyms.
    Checked as the tools check them (none, blank, duplicates, control characters are errors)."""
    text = _field(text, what)
    # A tab or another control character is kept inside its label so the check below names it.
    parts = re.split(r"[,，\n]", text) if re.search(r"[,，\n]", text) else re.split(SPACES, text)
    labels = [part.strip(SPACE_CHARS) for part in parts if part.strip(SPACE_CHARS)]
    if not labels:
        raise LabelError(f"type at least one {what} (separated by spaces, or by commas to keep spaces inside one)")
    return check_labels(labels, what)


def split_phrases(text: str | None) -> list[str]:
    """The phrases typed into one field, one a line (a phrase may hold spaces and commas)."""
    text = _field(text, "phrase")
    phrases = [line.strip(SPACE_CHARS) for line in text.split("\n") if line.strip(SPACE_CHARS)]
    if not phrases:
        raise LabelError("type at least one phrase (one a line)")
    return check_phrases(phrases)


def _field(text: str | None, what: str) -> str:
    text = (text or "").replace("\r\n", "\n")
    if len(text) > MAX_TEXT_CHARS:
        raise LabelError(f"the {what} field holds {len(text)} characters; at most {MAX_TEXT_CHARS}")
    return text


def boxes_from_text(text: str | None, required: bool = True) -> np.ndarray | None:
    """Boxes typed (or drawn, or loaded) into the boxes field: JSON in any form ``tools/classify_boxes.py``
    reads. Blank is an error when ``required``, else None (grounding then proposes boxes)."""
    text = (text or "").strip()
    if not text:
        if required:
            raise BoxError("give at least one box: click two corners on the picture, type "
                           "[[x1, y1, x2, y2], ...] or load a boxes JSON file")
        return None
    if len(text) > MAX_TEXT_CHARS * 10:
        raise BoxError(f"the boxes field holds {len(text)} characters; at most {MAX_TEXT_CHARS * 10}")
    boxes = parse_boxes(text, "the boxes field")
    if len(boxes) > MAX_BOXES:
        raise BoxError(f"{len(boxes)} boxes given; the demo takes at most {MAX_BOXES}")
    if required and not len(boxes):
        raise BoxError("the boxes field holds no box: give at least one [x1, y1, x2, y2]")
    return boxes


def boxes_text(boxes) -> str:
    """Boxes as the JSON the boxes field holds (whole pixels where they are whole)."""
    rows = [[int(v) if float(v).is_integer() else round(float(v), 1) for v in box] for box in np.asarray(boxes)]
    return json.dumps(rows)


def add_corner(pending: tuple[float, float] | None, x: float, y: float, text: str | None):
    """A click on the picture while drawing boxes: the first click of a pair keeps its point, the second
    adds the box between the two to the boxes field. Returns (pending point, boxes text, message)."""
    x, y = float(x), float(y)
    if pending is None:
        return (x, y), text or "", f"first corner at ({x:.0f}, {y:.0f}): now click the opposite corner"
    (x0, y0), (x1, y1) = pending, (x, y)
    box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
    if box[0] == box[2] or box[1] == box[3]:
        return None, text or "", "the two corners make a box of zero area: click two opposite corners"
    current = boxes_from_text(text, required=False)
    current = np.zeros((0, 4)) if current is None else current
    if len(current) >= MAX_BOXES:
        raise BoxError(f"the demo takes at most {MAX_BOXES} boxes")
    rows = np.concatenate([current, [box]])
    return None, boxes_text(rows), f"box {len(rows)} added: {boxes_text([box])[1:-1]}"


def _short(text: str) -> str:
    return text if len(text) <= CAPTION_CHARS else text[: CAPTION_CHARS - 1] + "…"


# ------------------------------------------------------------------------------------------------ answers
@dataclass
class SegmentAnswer:
    overlay: Path
    heatmaps: Path
    label_map: Path
    json: Path
    table: list[list]
    message: str


@dataclass
class BoxesAnswer:
    picture: Path
    json: Path
    table: list[list]
    headers: list[str]
    message: str


@dataclass
class GroundAnswer:
    picture: Path
    heatmaps: Path
    json: Path
    table: list[list]
    message: str


@dataclass
class ExploreAnswer:
    picture: Path
    table: list[list] = field(default_factory=list)
    message: str = ""


def guarded(job: Callable, *args, **kwargs):
    """``(job's answer, "")``, or ``(None, "error: ...")``: one line for the page, never a traceback there.

    A user's mistake reads as its message; anything else is a fault of the demo, logged whole on the
    server, and the page says so in one line. Either way the server keeps serving.
    """
    try:
        return job(*args, **kwargs), ""
    except FGDenseError as err:
        return None, f"error: {one_line(err)}"
    except Exception as err:  # a bug must not take the page down: log it, tell the person in one line
        log.exception("demo job %s failed", getattr(job, "__name__", job))
        return None, f"error: unexpected {type(err).__name__}: {one_line(err)} (details in the server's log)"


def released_size(config) -> str | None:
    """The released FG-CLIP 2 size (base, large, so400m) a config has, or None (tiny, random, custom)."""
    vision = config.vision_config
    for name, arch in ARCHITECTURES.items():
        if name != "tiny" and (vision.hidden_size, vision.num_hidden_layers) == (arch.hidden, arch.layers):
            return name
    return None


# ------------------------------------------------------------------------------------------------- engine
class DemoEngine:
    """The page's jobs on one model: segment, label boxes, ground, explore dense features.

    ``max_num_patches`` is the budget of the first three jobs (``"auto"``: 16384 on a GPU, 1024 on a CPU;
    shared, so their features are shared); the explorer picks its own from :attr:`budget_choices`.
    Output files go into ``work_dir`` (default: a new temporary folder), one folder per run, the last
    ``KEEP_RUNS`` kept. Jobs run one at a time: they share the model and the CPU.
    """

    def __init__(self, model, processor=None, tokenizer=None, *, max_num_patches="auto", precision: str = "auto",
                 text_mask: str = "tokenizer", font: str | None = None, cache_capacity: int = DEFAULT_CAPACITY,
                 work_dir=None, max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
                 name: str | None = None):
        self.model = model
        # Resolved once: the three tasks must hold the same processor, which the cache key includes.
        processor = FGCLIP2Processor.for_model(model, processor, tokenizer)
        self.cache = FeatureCache(cache_capacity)
        common = dict(feature_cache=self.cache, max_num_patches=max_num_patches, precision=precision,
                      text_mask=text_mask)
        self.segmenter = cached_task(Segmenter)(model, processor, **common)
        self.classifier = cached_task(BoxClassifier)(model, processor, **common)
        self.grounder = cached_task(Grounder)(model, processor, **common)
        self.name = name or getattr(model, "name_or_path", type(model).__name__)
        self.font = font
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="fgdense-demo-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._runs = 0
        self._lock = threading.Lock()  # one job at a time: they share the model (and, on a CPU, every core)
        self._views_lock = threading.Lock()
        self._images_lock = threading.Lock()
        self._images: dict[tuple, Image.Image] = {}

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
    def budget(self) -> int | None:
        """The patch budget of segmenting, labelling boxes and grounding on this device."""
        return resolve_budget(self.segmenter.settings.max_num_patches, self.device)

    @property
    def budget_choices(self) -> list[int]:
        """Budgets the explorer offers: up to 16384 on a GPU, up to 4096 on a CPU."""
        top = MAX_PATCHES if self.device.type == "cuda" else CPU_BUDGET_LIMIT
        return sorted({b for b in BUDGET_CHOICES if b <= top} | ({self.budget} if self.budget else set()))

    @property
    def released(self) -> str | None:
        return released_size(self.model.config)

    @property
    def auto_threshold(self) -> float | None:
        return self.segmenter.auto_threshold()

    def notice(self) -> str:
        """What the page says about the model it runs (Markdown), with a warning for a random one."""
        budget = f"{self.budget} patches" if self.budget else "the checkpoint's own patch budget"
        size = f"FG-CLIP 2 {self.released}" if self.released else "not a released FG-CLIP 2 size"
        text = f"Model **{self.name}** ({size}) on **{self.device}**, image features at {budget}."
        if not self.released:
            text += ("\n\n**This checkpoint is tiny or random: the page shows the format of the results, not "
                     "the model.** For real results start the demo with a released checkpoint, e.g. "
                     "`--model qihoo360/fg-clip2-base`.")
        return text

    # ------------------------------------------------------------------------------------------ inputs
    def image(self, path) -> Image.Image:
        """The uploaded image at ``path`` as RGB (EXIF rotation applied), after the size limits."""
        _need_image(path)
        path = Path(path)
        name = path.name
        try:
            stat = path.stat()
        except OSError:
            raise ImageLoadError(f"the uploaded image {name} is gone; upload it again") from None
        if stat.st_size > self.max_upload_bytes:
            raise ImageLoadError(f"the image {name} is {_size(stat.st_size)}; the demo takes images up to "
                                 f"{_size(self.max_upload_bytes)}")
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._images_lock:
            if key in self._images:
                return self._images[key]
        try:
            with Image.open(path) as header:  # the size is in the header: refuse a huge image before decoding it
                width, height = header.size
        except Exception:
            width = height = 0  # not readable as an image: load_image below says so
        if width * height > self.max_pixels:
            raise ImageLoadError(f"the image {name} is {width}x{height} pixels; the demo takes images up to "
                                 f"{self.max_pixels / 1e6:g} megapixels")
        try:
            image = load_image(path)
        except ImageLoadError as err:
            # The message names the server's temporary copy; the person knows the file by its name.
            raise ImageLoadError(str(err).replace(str(path), name)) from None
        with self._images_lock:  # the page checks uploads outside the job lock
            if len(self._images) >= 4:
                self._images.pop(next(iter(self._images)))
            self._images[key] = image
        return image

    def boxes_file(self, path) -> str:
        """A boxes JSON file (as ``tools/classify_boxes.py`` reads it) as the text of the boxes field."""
        if not path:
            return ""
        if Path(path).stat().st_size > self.max_upload_bytes:
            raise BoxError(f"the boxes file {Path(path).name} is too large")
        try:
            boxes = read_boxes_file(path)
        except BoxError as err:
            raise BoxError(str(err).replace(str(path), Path(path).name)) from None
        if len(boxes) > MAX_BOXES:
            raise BoxError(f"{len(boxes)} boxes given; the demo takes at most {MAX_BOXES}")
        return boxes_text(boxes)

    def view(self, path) -> Path:
        """A file of the uploaded image as the jobs see it (EXIF rotation applied), for the page to show
        and take clicks on: click coordinates are then pixels of the image the jobs read."""
        image = self.image(path)
        return self._view_file(image_digest(image), lambda: image)

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
        return self._view_file(key, draw)

    def _view_file(self, key: str, render: Callable[[], Image.Image]) -> Path:
        """The picture ``render`` draws, written once as ``views/KEY.png`` (the newest ``KEEP_VIEWS`` kept).

        The page is always handed files, never images in memory: gradio rewrites its cached copy of an
        in-memory image each time it is returned, while a browser may be reading it (a broken picture);
        files it copies once, whole."""
        folder = self.work_dir / "views"
        out = folder / f"{key}.png"
        with self._views_lock:
            if not out.exists():
                folder.mkdir(exist_ok=True)
                write_all([(out, write_picture(render()))])
                views = sorted(folder.glob("*.png"), key=lambda p: p.stat().st_mtime_ns)
                for old in views[:-KEEP_VIEWS]:
                    old.unlink(missing_ok=True)
        return out

    # -------------------------------------------------------------------------------------------- jobs
    def segment(self, path, labels: str, background: str = "", threshold="auto", refine: bool = False,
                progress: Progress = _quiet) -> SegmentAnswer:
        """Segment the image into the labels: overlay, heatmaps, palette label map, JSON and a table."""
        _need_image(path)  # the first thing to say when nothing is uploaded yet
        labels = split_labels(labels)
        background_labels = split_labels(background, "background label") if (background or "").strip() else []
        if len(labels) > MAX_LABELS:
            raise LabelError(f"at most {MAX_LABELS} labels fit a palette label map, got {len(labels)}")
        check_labels(labels + background_labels, "label (including background labels)")
        with self._lock:
            image = self._read(path, progress)
            lettering = choose_font(labels, self.font, warn=False)
            before = self.cache.computed
            progress(0.1, self._features_step(image))
            result = self.segmenter.segment(image, labels, threshold=threshold,
                                            background_labels=tuple(background_labels), refine=bool(refine))
            progress(0.7, "drawing the pictures")
            folder = self._run_folder("segment")
            paths = write_segmentation(image, result, folder, _stem(path), font=lettering,
                                       extra_json={"image": Path(path).name, "model": self.name,
                                                   "max_patches": self.budget or "checkpoint"})
        total = float(result.label_map.size)
        table = [[label, f"{area / total:.1%}", _score(mean), _score(result.scores[k].max())]
                 for k, (label, area, mean) in enumerate(zip(result.labels, result.areas(), result.mean_scores()))]
        table.append(["(background)", f"{(result.label_map == BACKGROUND).sum() / total:.1%}", "", ""])
        message = (f"{len(labels)} label(s) at {self._grid_text(image)}; threshold "
                   f"{'none' if result.threshold is None else f'{result.threshold:.3f}'}; "
                   f"{self._reuse_text(before)}{_glyph_note(lettering)}")
        return SegmentAnswer(paths["overlay"], paths["heatmaps"], paths["label_map"], paths["json"], table, message)

    def classify(self, path, boxes: str, labels: str, top_k: int = 5, progress: Progress = _quiet) -> BoxesAnswer:
        """Label the boxes of the boxes field: the labelled picture, a top-k table and the JSON."""
        _need_image(path)  # the first thing to say when nothing is uploaded yet
        labels = split_labels(labels)
        array = boxes_from_text(boxes)
        top_k = max(1, min(int(top_k), len(labels)))
        with self._lock:
            image = self._read(path, progress)
            lettering = choose_font(labels, self.font, warn=False)
            before = self.cache.computed
            progress(0.1, self._features_step(image))
            result = self.classifier.classify(image, array, labels, top_k=top_k)
            progress(0.7, "drawing the picture")
            found = result.to_detections()
            picture = draw_boxes(image, found, score_labels(found.data["class_name"], found.confidence), font=lettering)
            folder = self._run_folder("boxes")
            json_path, png_path = folder / f"{_stem(path)}.json", folder / f"{_stem(path)}.png"
            payload = {"image": Path(path).name, "image_size_hw": [image.height, image.width], "model": self.name,
                       **result.to_json()}
            _write(json_path, payload, (png_path, picture))
        headers = ["box", "x1", "y1", "x2", "y2"] + [f"top {i + 1}" for i in range(top_k)]
        table = []
        for i, (box, ranked) in enumerate(zip(result.boxes, result.top_k)):
            cells = [f"{result.labels[j]} ({result.probabilities[i, j]:.2f})" for j in ranked]
            table.append([i + 1, *[round(float(v), 1) for v in box], *cells])
        message = (f"{len(array)} box(es), {len(labels)} label(s) at {self._grid_text(image)}; "
                   f"{self._reuse_text(before)}{_glyph_note(lettering)}")
        return BoxesAnswer(png_path, json_path, table, headers, message)

    def ground(self, path, phrases: str, boxes: str = "", progress: Progress = _quiet) -> GroundAnswer:
        """Ground the phrases: among the boxes of the boxes field when it has any, else in proposed boxes."""
        _need_image(path)  # the first thing to say when nothing is uploaded yet
        phrases = split_phrases(phrases)
        array = boxes_from_text(boxes, required=False)
        with self._lock:
            image = self._read(path, progress)
            short = [_short(p) for p in phrases]
            lettering = choose_font(short, self.font, warn=False)
            before = self.cache.computed
            progress(0.1, self._features_step(image))
            result = self.grounder.ground(image, phrases, boxes=array)
            progress(0.7, "drawing the pictures")
            found = result.to_detections()
            picture = draw_boxes(image, found, score_labels([_short(n) for n in found.data["class_name"]],
                                                            found.confidence), font=lettering)
            maps = result.heatmaps()
            heat = heatmap_grid(image, _maps_result(short, maps), font=lettering)
            folder = self._run_folder("ground")
            json_path, png_path = folder / f"{_stem(path)}.json", folder / f"{_stem(path)}.png"
            heat_path = folder / f"{_stem(path)}_heatmaps.png"
            payload = {"image": Path(path).name, "image_size_hw": [image.height, image.width], "model": self.name,
                       "mode": "candidate boxes" if array is not None else "proposals", **result.to_json()}
            _write(json_path, payload, (png_path, picture), (heat_path, heat))
        table = []
        for p, phrase in enumerate(phrases):
            box = "" if result.best_indices[p] < 0 else boxes_text([result.best_boxes[p]])[1:-1]
            score = "" if result.best_indices[p] < 0 else _score(result.best_scores[p])
            table.append([phrase, result.walk_types[p], box, score])
        mode = f"among {len(array)} candidate box(es)" if array is not None else "in boxes proposed from the heatmaps"
        message = (f"{len(phrases)} phrase(s) grounded {mode} at {self._grid_text(image)}; "
                   f"{self._reuse_text(before)}{_glyph_note(lettering)}")
        return GroundAnswer(png_path, heat_path, json_path, table, message)

    def point_similarity(self, path, x: float, y: float, budget: int | None = None,
                         progress: Progress = _quiet) -> ExploreAnswer:
        """Cosine similarity of the patch under image pixel (x, y) to every patch: which parts of the image
        the model sees as alike (FG-CLIP 2's dense-feature display)."""
        budget = self._explorer_budget(budget)
        with self._lock:
            image = self._read(path, progress)
            if not (0 <= float(x) < image.width and 0 <= float(y) < image.height):
                raise FGDenseError(f"the point ({x}, {y}) is outside the {image.width}x{image.height} image")
            before = self.cache.computed
            progress(0.1, self._features_step(image, budget))
            feats = self._explorer_features(image, budget)
            cell_h, cell_w = feats.cell_size
            row = min(int(float(y) // cell_h), feats.grid_size[0] - 1)
            col = min(int(float(x) // cell_w), feats.grid_size[1] - 1)
            grid = feats.normalized()
            cosine = grid @ grid[row, col]
            scores = feats.upsample(cosine[None]).cpu().numpy().astype(np.float32)
            name = f"patch row {row + 1}, column {col + 1}"
            progress(0.8, "drawing the picture")
            marked = _marked(image, float(x), float(y))
            picture = heatmap_grid(marked, _maps_result([name], scores), panel=max(320, min(640, max(image.size))))
            out = self._run_folder("point") / f"{_stem(path)}_point.png"
            write_all([(out, write_picture(picture))])
        h, w = feats.grid_size
        message = (f"similarity of {name} (at {float(x):.0f}, {float(y):.0f}) to every patch of the {h}x{w} grid "
                   f"({h * w} patches); {self._reuse_text(before)}")
        return ExploreAnswer(out, [[name, _score(scores.min()), _score(scores.max())]], message)

    def text_heatmaps(self, path, texts: str, budget: int | None = None, progress: Progress = _quiet) -> ExploreAnswer:
        """Each text's cosine heatmap over the dense features at ``budget`` patches."""
        _need_image(path)  # the first thing to say when nothing is uploaded yet
        texts = split_labels(texts, "text")
        budget = self._explorer_budget(budget)
        with self._lock:
            image = self._read(path, progress)
            lettering = choose_font(texts, self.font, warn=False)
            before = self.cache.computed
            progress(0.1, self._features_step(image, budget))
            feats = self._explorer_features(image, budget)
            settings = self.segmenter.configured(max_num_patches=budget)
            grid_maps = feats.similarity(self.segmenter.label_embeddings(texts, settings))
            scores = feats.upsample(grid_maps).cpu().numpy().astype(np.float32)
            progress(0.8, "drawing the pictures")
            picture = heatmap_grid(image, _maps_result(texts, scores), font=lettering)
            out = self._run_folder("text") / f"{_stem(path)}_text.png"
            write_all([(out, write_picture(picture))])
        table = []
        for text, grid_map in zip(texts, grid_maps.cpu()):
            r, c = divmod(int(grid_map.argmax()), grid_map.shape[1])
            table.append([text, _score(grid_map.min()), _score(grid_map.max()), f"row {r + 1}, column {c + 1}"])
        h, w = feats.grid_size
        message = (f"{len(texts)} text(s) over the {h}x{w} grid ({h * w} patches, budget {budget}); "
                   f"{self._reuse_text(before)}{_glyph_note(lettering)}")
        return ExploreAnswer(out, table, message)

    # -------------------------------------------------------------------------------------------- helpers
    def _read(self, path, progress: Progress) -> Image.Image:
        progress(0.02, "reading the image")
        return self.image(path)

    def _explorer_budget(self, budget) -> int:
        if budget in (None, ""):
            return self.budget or 1024
        try:
            budget = int(budget)
        except (TypeError, ValueError):
            raise FGDenseError(f"the patch budget must be one of {self.budget_choices}, got {budget!r}") from None
        if budget not in self.budget_choices:
            raise FGDenseError(f"the patch budget must be one of {self.budget_choices}, got {budget}")
        return budget

    def _explorer_features(self, image, budget: int):
        # Through the segmenter, so the explorer shares the cache (and an entry at the tabs' budget).
        return self.segmenter.image_features([image], self.segmenter.configured(max_num_patches=budget))[0]

    def _features_step(self, image, budget=None) -> str:
        budget = budget or self.budget
        return f"image features ({budget or 'checkpoint'} patches; reused if this image was seen at this budget)"

    def _grid_text(self, image=None) -> str:
        return f"{self.budget} patches" if self.budget else "the checkpoint's patch budget"

    def _reuse_text(self, before: int) -> str:
        return "image features computed" if self.cache.computed > before else "image features reused"

    def _run_folder(self, job: str) -> Path:
        """A new folder for one run's files; the oldest beyond ``KEEP_RUNS`` are removed."""
        self._runs += 1
        folder = self.work_dir / f"{self._runs:06d}-{job}"
        folder.mkdir(parents=True)
        runs = sorted(p for p in self.work_dir.iterdir() if p.is_dir() and p.name[:6].isdigit())
        for old in runs[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def close(self) -> None:
        """Remove the output folder (the page's files are gone with it)."""
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _need_image(path) -> None:
    if path is None or path == "":
        raise ImageLoadError("upload an image first")


def _stem(path) -> str:
    """A safe file stem from the uploaded file's name."""
    stem = re.sub(r"[^\w.-]+", "_", Path(str(path)).stem).strip("._")
    return stem[:60] or "image"


def _size(count: int) -> str:
    """A byte count for people: ``31 KB``, ``12.3 MB``."""
    return f"{count / 2**20:.1f} MB" if count >= 2**20 else f"{max(1, round(count / 2**10))} KB"


def _score(value) -> str:
    return "" if value is None else f"{float(value):.3f}"


def _glyph_note(lettering) -> str:
    if not lettering.missing:
        return ""
    return f"; no font here draws {lettering.missing!r}: the pictures show {REPLACEMENT} in their place"


def _maps_result(names: Sequence[str], maps: np.ndarray) -> SegmentationResult:
    """Score maps as a result the segmentation pictures draw (no label map: every pixel background)."""
    maps = np.asarray(maps, np.float32)
    return SegmentationResult(list(names), maps, np.full(maps.shape[1:], BACKGROUND, np.int32))


def _marked(image: Image.Image, x: float, y: float) -> Image.Image:
    """The image with a ring at (x, y), drawn in black and white so it shows on any colour."""
    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    radius = max(5, round(min(image.size) / 40))
    width = max(2, radius // 3)
    draw.ellipse([x - radius - width, y - radius - width, x + radius + width, y + radius + width], outline=(0, 0, 0),
                 width=width)
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=(255, 255, 255), width=width)
    return marked


def _write(json_path: Path, payload: dict, *pictures) -> None:
    """A run's JSON and pictures, all or nothing."""
    writes = [(json_path, write_text(json.dumps(payload, ensure_ascii=False, indent=2)))]
    writes += [(path, write_picture(picture)) for path, picture in pictures]
    write_all(writes)


__all__ = ["BoxesAnswer", "DemoEngine", "ExploreAnswer", "GroundAnswer", "SegmentAnswer", "add_corner",
           "boxes_from_text", "boxes_text", "guarded", "released_size", "split_labels", "split_phrases"]
