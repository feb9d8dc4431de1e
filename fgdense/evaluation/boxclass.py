"""Box classification evaluation (BoxClass-CN, COCO, LVIS) with the protocol of FG-CLIP 2's published numbers.

Protocol: every category name is a prompt (lower-cased, ``box`` walk, 64 tokens; LVIS's ``_`` become
spaces), each image gets the checkpoint's default processing (the dynamic patch budget, image alone),
each annotated box (COCO xywh -> xyxy pixels) is projected onto the patch grid and pooled by RoIAlign
1x1 from the dense features, and its cosine similarity to every category decides top-1 / top-5.

Speed: one backbone pass per image for all of its boxes (the official script re-encodes the image per
box), category embeddings once, images decoded and processed in DataLoader workers. Scale-out: under
``torchrun`` images are sharded across ranks and the counts all-reduced. With a predictions file every
annotation's outcome is written as it is computed (one JSON line each), so an interrupted run resumes
where it stopped and the report is rebuilt from the file.

Nothing is dropped silently: annotations that cannot be scored are counted by reason (see
``SKIP_REASONS``) and, with a predictions file, listed there too.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ..dense import GPU_DEFAULT_PATCHES, DenseFeatures, dense_grids
from ..errors import BoxError, FGDenseError
from ..files import write_all, write_text
from ..model.boxes import validate_boxes
from ..processing import FGCLIP2ImageProcessor, encode_text, load_tokenizer
# Boxes refer to the stored pixels: images are decoded without EXIF rotation.
from ..processing.image import decode_as_stored as decode_image

SKIP_REASONS = (
    "missing_image",  # the image file is not under the images folder
    "unreadable_image",  # the file exists but does not decode as an image
    "degenerate_box",  # zero area, inverted, non-finite, malformed, or entirely outside the image
    "unknown_image_id",  # the annotation's image_id is not in `images`
    "unknown_category",  # the annotation's category_id is not in `categories`
)
TOP_K = 5
HEADER_KEY = "fgdense_boxclass_predictions"


class DatasetError(FGDenseError, ValueError):
    """An annotation file that is not usable COCO-format box data, or a predictions file that does not match."""


# --------------------------------------------------------------------------------------------- dataset
@dataclass
class BoxAnnotation:
    annotation_id: int | str
    category_id: int | str
    bbox: tuple[float, float, float, float]  # xyxy, original-image pixels (may be degenerate)


@dataclass
class BoxImage:
    index: int  # position among the dataset's evaluated images: the order of reports and predictions
    image_id: int | str
    file_name: str
    annotations: list[BoxAnnotation] = field(default_factory=list)


@dataclass
class BoxClassDataset:
    """A COCO-format box-classification set: categories, images with their boxes, load-time skips."""

    categories: list[tuple[int | str, str]]  # (category id, prompt), in file order
    images: list[BoxImage]  # only images with at least one annotation to score
    skipped: Counter  # annotations dropped while reading, by reason (unknown image id / category)
    num_annotations: int  # every annotation in the file
    source: str = ""

    @property
    def category_index(self) -> dict:
        return {cid: i for i, (cid, _) in enumerate(self.categories)}


def category_prompt(name: str) -> str:
    """The prompt of a category name: LVIS writes spaces as ``_`` (``traffic_light``)."""
    return " ".join(name.replace("_", " ").split())


def _xywh_to_xyxy(bbox) -> tuple[float, float, float, float]:
    """COCO xywh -> xyxy; a malformed box becomes NaN so that box validation reports it as degenerate."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return (float("nan"),) * 4
    return x, y, x + w, y + h


def _image_file(entry: dict) -> str:
    """``file_name`` (COCO, BoxClass-CN) or the last path component of ``coco_url`` (LVIS)."""
    name = entry.get("file_name") or ""
    if not name and entry.get("coco_url"):
        name = str(entry["coco_url"]).rstrip("/").rsplit("/", 1)[-1]
    return str(name)


def load_boxclass_dataset(path) -> BoxClassDataset:
    """Read a COCO-format annotation file (COCO instances, LVIS, BoxClass-CN)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"annotation file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DatasetError(f"annotation file {path} lacks COCO-format 'images', 'annotations' and 'categories' lists")

    categories, seen = [], set()
    for index, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str) or not cat["name"].strip():
            raise DatasetError(f"{path}: category {index} needs an 'id' and a non-empty 'name'")
        if cat["id"] in seen:
            raise DatasetError(f"{path}: category id {cat['id']!r} appears twice")
        seen.add(cat["id"])
        categories.append((cat["id"], category_prompt(cat["name"])))
    if not categories:
        raise DatasetError(f"{path} has no categories")

    images: dict = {}
    for index, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise DatasetError(f"{path}: image entry {index} has no 'id'")
        name = _image_file(entry)
        if not name:
            raise DatasetError(f"{path}: image {entry['id']!r} has neither 'file_name' nor 'coco_url'")
        images[entry["id"]] = BoxImage(-1, entry["id"], name)

    skipped: Counter = Counter()
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DatasetError(f"{path}: annotation {index} is not an object")
        image = images.get(ann.get("image_id"))
        if image is None:
            skipped["unknown_image_id"] += 1
        elif ann.get("category_id") not in seen:
            skipped["unknown_category"] += 1
        else:
            image.annotations.append(BoxAnnotation(ann.get("id", index), ann["category_id"], _xywh_to_xyxy(ann.get("bbox"))))

    kept = [image for image in images.values() if image.annotations]
    for index, image in enumerate(kept):
        image.index = index
    return BoxClassDataset(categories, kept, skipped, len(data["annotations"]), str(path))


# ------------------------------------------------------------------------------------ image loading
class _ImageLoader(torch.utils.data.Dataset):
    """Decodes and processes one image per item (in DataLoader workers); failures become skip reasons."""

    def __init__(self, images: list[BoxImage], images_dir: Path, processor):
        self.images, self.images_dir, self.processor = images, images_dir, processor

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        path = self.images_dir / image.file_name
        if not path.is_file():
            return {"image": image, "error": "missing_image", "detail": f"{path} does not exist"}
        try:
            pixels = decode_image(path)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            return {"image": image, "error": "unreadable_image", "detail": str(err)}
        inputs = self.processor(pixels)  # the checkpoint's default: this image's own dynamic budget
        h, w = (int(v) for v in inputs["spatial_shapes"][0])
        # Only the real patch rows travel back; padding is never looked at (see dense_grids).
        return {"image": image, "size": pixels.shape[:2], "pixel_values": inputs["pixel_values"][0, : h * w],
                "spatial_shape": inputs["spatial_shapes"][0]}


def _collate(items):
    return items


# ------------------------------------------------------------------------------------------ counting
class Tally:
    """Counts per category (scored, top-1 correct, top-5 correct), skips by reason, images done."""

    def __init__(self, categories):
        self.index = {cid: i for i, (cid, _) in enumerate(categories)}
        self.per_category = torch.zeros(len(categories), 3, dtype=torch.int64)
        self.skips = torch.zeros(len(SKIP_REASONS), dtype=torch.int64)
        self.images = torch.zeros(1, dtype=torch.int64)

    def add(self, record: dict) -> None:
        if "skipped" in record:
            self.skips[SKIP_REASONS.index(record["skipped"])] += 1
            return
        row = self.per_category[self.index[record["category_id"]]]
        row[0] += 1
        row[1] += int(record["top5"][0] == record["category_id"])
        row[2] += int(record["category_id"] in record["top5"])

    def add_image(self, records: list[dict]) -> None:
        self.images += 1
        for record in records:
            self.add(record)

    def running(self) -> dict:
        scored, top1, top5 = self.per_category.sum(0).tolist()
        return {"top1": f"{100 * top1 / max(scored, 1):.1f}", "top5": f"{100 * top5 / max(scored, 1):.1f}"}

    def all_reduce(self, device) -> None:
        """Sum the counts of every rank (no-op without torch.distributed)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        flat = torch.cat([self.per_category.flatten(), self.skips, self.images]).to(device)
        torch.distributed.all_reduce(flat)
        flat = flat.cpu()
        n = self.per_category.numel()
        self.per_category = flat[:n].reshape(self.per_category.shape).clone()
        self.skips = flat[n : n + len(SKIP_REASONS)].clone()
        self.images = flat[n + len(SKIP_REASONS) :].clone()


def _percent(part: int, whole: int):
    return 100.0 * part / whole if whole else None


def build_report(dataset: BoxClassDataset, tally: Tally, meta: dict) -> dict:
    skips = {reason: int(n) for reason, n in zip(SKIP_REASONS, tally.skips.tolist())}
    for reason, n in dataset.skipped.items():
        skips[reason] += n
    scored, top1, top5 = (int(v) for v in tally.per_category.sum(0).tolist())
    per_category = {}
    for (cid, name), (n, c1, c5) in zip(dataset.categories, tally.per_category.tolist()):
        per_category[str(cid)] = {"name": name, "evaluated": n, "top1": _percent(c1, n), "top5": _percent(c5, n),
                                  "top1_correct": c1, "top5_correct": c5}
    images_done = int(tally.images.item())
    return {
        **meta,
        "top1": _percent(top1, scored),
        "top5": _percent(top5, scored),
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
        "per_category": per_category,
    }


def _display_width(text: str) -> int:
    """Terminal columns of a string: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def format_report(report: dict, max_categories: int = 40) -> str:
    """A printable table: the summary, skips by reason, and per-category accuracy (worst first when cut)."""
    def pct(value):
        return "   n/a" if value is None else f"{value:6.2f}"

    lines = [
        f"box classification: {report.get('annotations_file', '')}",
        f"  top-1 {pct(report['top1'])}   top-5 {pct(report['top5'])}   "
        f"({report['evaluated']} of {report['annotations']} annotations scored, "
        f"{report['images_done']}/{report['images']} images{'' if report['complete'] else ', INCOMPLETE'})",
        f"  skipped {report['skipped_total']}: " + ", ".join(f"{k} {v}" for k, v in report["skipped"].items()),
    ]
    rows = [(cid, c) for cid, c in report["per_category"].items() if c["evaluated"]]
    if rows:
        shown = rows
        if len(rows) > max_categories:
            shown = sorted(rows, key=lambda r: (r[1]["top1"], -r[1]["evaluated"]))[:max_categories]
            lines.append(f"  per category (the {max_categories} worst top-1 of {len(rows)}; all in the JSON report):")
        else:
            lines.append("  per category:")
        width = max(_display_width(c["name"]) for _, c in shown)
        lines.append(f"    {'id':>8}  {'name' + ' ' * (width - 4)}  {'n':>6}  {'top-1':>6}  {'top-5':>6}")
        for cid, c in shown:
            name = c["name"] + " " * (width - _display_width(c["name"]))
            lines.append(f"    {cid:>8}  {name}  {c['evaluated']:>6}  {pct(c['top1'])}  {pct(c['top5'])}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- predictions
def _part_path(predictions: Path, rank: int) -> Path:
    return predictions.with_name(f"{predictions.name}.rank{rank}.part")


def _part_paths(predictions: Path) -> list[Path]:
    return sorted(predictions.parent.glob(f"{predictions.name}.rank*.part"))


def _read_done(paths, dataset: BoxClassDataset, header: dict) -> dict[int, list[dict]]:
    """Records of the images fully present in the given prediction files, by image index.

    A line cut short by an interruption, and an image with only some of its annotations written,
    are left out: those images are evaluated again.
    """
    by_id = {image.image_id: image for image in dataset.images}
    found: dict[int, list[dict]] = {}
    for path in paths:
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if number == 0:
                    if record.get(HEADER_KEY) != header:
                        raise DatasetError(
                            f"predictions file {path} was written for {record.get(HEADER_KEY)}, not {header}; "
                            "resume with the same annotations and model, or write a new predictions file"
                        )
                    continue
                image = by_id.get(record.get("image_id"))
                if image is None:
                    raise DatasetError(f"predictions file {path} names image {record.get('image_id')!r}, "
                                       "which the annotation file does not have")
                found.setdefault(image.index, []).append(record)
    return {i: recs for i, recs in found.items() if len(recs) == len(dataset.images[i].annotations)}


def _dump(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _rewrite_predictions(predictions: Path, header: dict, done: dict[int, list[dict]]) -> None:
    """The predictions file with every finished image in dataset order; rank part files removed."""
    lines = [_dump({HEADER_KEY: header})] + [_dump(r) for i in sorted(done) for r in done[i]]
    write_all([(predictions, write_text("".join(lines)))])
    for part in _part_paths(predictions):
        part.unlink()


# ---------------------------------------------------------------------------------------- scoring
def _dist():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier():
    if _dist()[1] > 1:
        torch.distributed.barrier()


def _score_batch(model, items, text, category_ids, max_batch_tokens, precision) -> list[list[dict]]:
    """Prediction records of each image of a DataLoader batch: one backbone pass per image."""
    ok = [item for item in items if "error" not in item]
    grids = []
    if ok:
        width = max(item["pixel_values"].shape[0] for item in ok)
        values = torch.stack([F.pad(item["pixel_values"], (0, 0, 0, width - item["pixel_values"].shape[0])) for item in ok])
        shapes = torch.stack([item["spatial_shape"] for item in ok])
        grids = dense_grids(model, values, shapes, max_batch_tokens, precision)
    grid_of = {id(item): grid for item, grid in zip(ok, grids)}
    k = min(TOP_K, text.shape[0])
    results = []
    for item in items:
        image = item["image"]
        base = [{"image_id": image.image_id, "annotation_id": a.annotation_id, "category_id": a.category_id}
                for a in image.annotations]
        if "error" in item:
            results.append([dict(b, skipped=item["error"], detail=item["detail"]) for b in base])
            continue
        size = tuple(int(v) for v in item["size"])
        records, valid, boxes = [None] * len(base), [], []
        for i, ann in enumerate(image.annotations):
            try:
                validate_boxes([ann.bbox], size)
                valid.append(i)
                boxes.append(ann.bbox)
            except BoxError as err:
                records[i] = dict(base[i], skipped="degenerate_box", detail=str(err))
        if boxes:
            regions = DenseFeatures(grid_of[id(item)], size).region_embeddings(boxes)
            sims = F.normalize(regions.to(text.device), dim=-1) @ text.T
            scores, top = sims.topk(k, dim=-1)
            for row, i in enumerate(valid):
                ids = [category_ids[j] for j in top[row].tolist()]
                records[i] = dict(base[i], bbox=[round(v, 2) for v in image.annotations[i].bbox], top5=ids,
                                  scores=[round(s, 6) for s in scores[row].tolist()])
        results.append(records)
    return results


def evaluate_box_classification(model, annotations, images_dir, processor=None, tokenizer=None, *,
                                batch_size: int = 8, workers: int = 0, predictions=None, resume: bool = False,
                                max_images: int | None = None, precision: str = "auto",
                                max_batch_tokens: int = GPU_DEFAULT_PATCHES, progress: bool = True) -> dict:
    """Box-classification accuracy of ``model`` on a COCO-format annotation file; returns the report.

    ``annotations`` is a path (or a :class:`BoxClassDataset`); image files are looked up under
    ``images_dir``. ``processor`` / ``tokenizer`` default to the model's checkpoint's: the default
    processor (dynamic patch budget) is the protocol of the published numbers. ``batch_size`` images
    are decoded per DataLoader batch by ``workers`` background processes. ``predictions`` (a .jsonl
    path) receives one line per annotation; with ``resume`` the images already in it are skipped and
    their outcomes counted from it. ``max_images`` stops after that many (more) images: the report then
    says ``complete: false``. Under ``torch.distributed`` every rank must call this; images are sharded
    and the counts summed, and every rank returns the same report.
    """
    dataset = annotations if isinstance(annotations, BoxClassDataset) else load_boxclass_dataset(annotations)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(f"images folder {images_dir} does not exist")
    if resume and predictions is None:
        raise ValueError("resume needs the predictions file of the interrupted run")
    if batch_size < 1 or workers < 0 or (max_images is not None and max_images < 0):
        raise ValueError("batch_size must be >= 1, workers >= 0 and max_images >= 0")
    folder = getattr(model, "checkpoint_folder", None)
    if processor is None:
        processor = FGCLIP2ImageProcessor.from_pretrained(folder) if folder else FGCLIP2ImageProcessor()
    if tokenizer is None:
        if folder is None:
            raise ValueError("pass a tokenizer: the model was not loaded from a checkpoint folder")
        tokenizer = load_tokenizer(folder)
    rank, world = _dist()
    device = model.device
    header = {"annotations": str(Path(dataset.source).resolve()) if dataset.source else "",
              "model": str(Path(folder).resolve()) if folder else "", "precision": precision}

    # Outcomes already on disk (resume); rank 0 folds stray part files into the main file first.
    done: dict[int, list[dict]] = {}
    if predictions is not None:
        predictions = Path(predictions)
        if not predictions.parent.is_dir():
            raise DatasetError(f"folder of the predictions file {predictions} does not exist")
        if resume:
            # Every rank reads (so a file that does not match stops every rank, not just one) ...
            done = _read_done([predictions, *_part_paths(predictions)], dataset, header)
        _barrier()
        if rank == 0:  # ... then one rank folds the part files of the interrupted run into the main file.
            # Without resume the file starts over at once (header only, part files of an earlier run
            # gone), so a later --resume after an interruption cannot pick up an older run's lines.
            _rewrite_predictions(predictions, header, done)
        _barrier()

    tally = Tally(dataset.categories)
    if rank == 0:
        for index in sorted(done):
            tally.add_image(done[index])
    remaining = [image for image in dataset.images if image.index not in done]
    if max_images is not None:
        remaining = remaining[:max_images]
    mine = remaining[rank::world]

    text = encode_text(model, tokenizer, [name for _, name in dataset.categories], walk_type="box").to(device)
    category_ids = [cid for cid, _ in dataset.categories]
    loader = torch.utils.data.DataLoader(_ImageLoader(mine, images_dir, processor), batch_size=batch_size,
                                         num_workers=workers, collate_fn=_collate)
    part = open(_part_path(predictions, rank), "w", encoding="utf-8") if predictions is not None else None
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        desc = "box classification" + (f" (rank 0 of {world})" if world > 1 else "")
        bar = tqdm(total=len(mine), desc=desc, unit="img")
    try:
        if part is not None:
            part.write(_dump({HEADER_KEY: header}))
        for items in loader:
            for records in _score_batch(model, items, text, category_ids, max_batch_tokens, precision):
                tally.add_image(records)
                if part is not None:
                    # An image's lines are written together and flushed every batch; an image cut off
                    # by a stop is incomplete in the file and evaluated again on resume.
                    part.write("".join(_dump(r) for r in records))
            if part is not None:
                part.flush()
            if bar is not None:
                bar.update(len(items))
                bar.set_postfix(tally.running())
    finally:
        if bar is not None:
            bar.close()
        if part is not None:
            part.close()

    tally.all_reduce(device if torch.distributed.is_initialized() and
                     torch.distributed.get_backend() == "nccl" else "cpu")
    if predictions is not None:
        _barrier()
        if rank == 0:
            # The resumed outcomes plus this run's; without resume an older file's content is replaced.
            everything = {**done, **_read_done(_part_paths(predictions), dataset, header)}
            _rewrite_predictions(predictions, header, everything)
        _barrier()
    meta = {"annotations_file": dataset.source, "images_dir": str(images_dir), "model": header["model"],
            "protocol": "category names as box-walk prompts; default dynamic patch budget; RoIAlign 1x1; cosine top-k"}
    return build_report(dataset, tally, meta)


__all__ = ["evaluate_box_classification", "load_boxclass_dataset", "format_report", "build_report", "BoxClassDataset",
           "BoxImage", "BoxAnnotation", "DatasetError", "SKIP_REASONS", "category_prompt", "decode_image"]
