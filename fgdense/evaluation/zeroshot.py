"""Zero-shot classification (ImageNet-1k, ImageNet-v2, any ImageFolder-style set) with the protocol of
FG-CLIP 2's published numbers (``eval/in1k/eval_IN1K.py``, ``eval/inv2/inv2.py``).

Every class name is put into each template and lower-cased, embedded with the ``short`` walk (64 tokens),
the normalised embeddings averaged and normalised again. Each image is embedded at a fixed budget of 1024
patches (the official ``max_num_patches=1024, dynamic_max_patches=False``) by
:class:`~fgdense.embed.Embedder` on the bulk runner; its score for a class is sigmoid(exp(logit_scale) *
cos + logit_bias), and top-1 / top-5 are read from it.

A class is a sub-folder of the images folder. Its index is its place among the sorted folder names (as
torchvision's ImageFolder: ImageNet-1k's synset folders), or, when every folder name is a number, that
number (ImageNet-v2's folders ``0`` to ``999``). The class names file gives one name per line in index order.

Beside the official headline numbers the report keeps each class's accuracy and the top-1 confusion
counts, so :mod:`fgdense.evaluation.plots` can draw what is mistaken for what from the report alone.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..bulk.distributed import current
from ..embed import Embedder, sigmoid_scores
from ..errors import DatasetError
from ..io.files import write_all, write_text
from ..prompts import TextEncoder, imagenet_templates
from .boxclass_report import fraction, sparse_confusion
from .embedding_runs import ImageEmbeddingJob, bad_counts, checked_inputs, run_images

BUDGET = 1024  # the official zero-shot scripts' fixed patch budget
TOP_K = 5
PREDICTIONS = "predictions.jsonl"  # in the output folder: per image its class and five best classes
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # ImageFolder's


def imagenet_classnames() -> list[str]:
    text = resources.files("fgdense").joinpath("assets/imagenet/classnames.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


def read_lines(path, what: str) -> list[str]:
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read the {what} file {path}: {err}") from None
    lines = [line for line in lines if line]
    if not lines:
        raise DatasetError(f"the {what} file {path} is empty")
    return lines


def image_folder(root: Path, classes: int) -> list[tuple[str, int]]:
    """(image path relative to ``root``, class index) of every image in a class sub-folder, in order."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DatasetError(f"{root} holds no class folders (expected one sub-folder of images per class)")
    numbered = all(name.isdigit() for name in folders)
    samples = []
    for position, name in enumerate(folders):
        label = int(name) if numbered else position
        if label >= classes:
            raise DatasetError(f"class folder {name!r} is class {label}, but there are only {classes} class names")
        files = sorted(p.name for p in (root / name).iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        samples += [(f"{name}/{file}", label) for file in files]
    if not samples:
        raise DatasetError(f"the class folders of {root} hold no images")
    return samples


def class_embeddings(task: Embedder, names: list[str], templates, progress: bool = False) -> torch.Tensor:
    """(K, D): each name in every template, lower-cased, short walk; normalised mean of the normalised."""
    encoder = TextEncoder(task.model, task.tokenizer, "short", lowercase=True, text_mask=task.settings.text_mask,
                          cache=False)
    return encoder.group_embeddings([[t.format(name) for t in templates] for name in names], progress=progress)


def class_breakdown(names: list[str], rows: list[dict]) -> dict:
    """Per class (keyed by index string) its images and top-1 / top-5 accuracy (None: no image), and the
    top-1 confusion counts (true class -> predicted class -> images, non-zero cells only): the shape of box
    classification's report, so its picture (:mod:`.plots`) is drawn the same way. Sparse, so 1000 classes
    never make a dense 1000 x 1000 matrix in the JSON."""
    images, right1, right5 = Counter(), Counter(), Counter()
    confusion: Counter = Counter()
    for row in rows:
        if "top5" not in row:  # skipped: not scored, as in the headline numbers
            continue
        label, top = row["label"], row["top5"]
        images[label] += 1
        right1[label] += top[0] == label
        right5[label] += label in top
        confusion[label, top[0]] += 1
    keys = [str(i) for i in range(len(names))]
    per_category = {key: {"name": name, "images": images[i], "top1": fraction(right1[i], images[i]),
                          "top5": fraction(right5[i], images[i])} for i, (key, name) in enumerate(zip(keys, names))}
    return {"per_category": per_category, "confusion": sparse_confusion(confusion, keys)}


class ZeroShotJob(ImageEmbeddingJob):
    """One image: its embedding against every class; outcome, the top-5 class indices."""

    kind = "zero-shot classification"

    def __init__(self, task, out, weights: np.ndarray, extra_settings: dict):
        super().__init__(task, out, extra_settings)
        self.weights = weights

    def outcomes(self, prepared, result):
        scores = sigmoid_scores(self.task.model, result[None, :], self.weights)[0]
        top = torch.from_numpy(scores).topk(min(TOP_K, len(scores))).indices.tolist()
        return [{"top5": top}]


def evaluate_zeroshot(embedder, images_dir, classnames=None, templates=None, *, out=None, workers: int = 0,
                      max_images: int | None = None, overwrite: bool = False, progress: bool = True,
                      status=None) -> dict:
    """Top-1 / top-5 accuracy of ``embedder`` (an :class:`Embedder` at 1024 patches by default, or a model)
    on the class folders of ``images_dir``. ``classnames``: a list or a file of one per line (default
    ImageNet's 1000); ``templates``: a list or file with ``{}`` for the name (default CLIP's 80, as the
    official script). ``out`` keeps one record per image (the same call again skips them) and
    ``predictions.jsonl``: per image its class index and its five best. The report also holds ``per_category``
    and ``confusion`` (:func:`class_breakdown`)."""
    task = embedder if isinstance(embedder, Embedder) else Embedder(embedder, precision="fp32", max_num_patches=BUDGET)
    root = checked_inputs(images_dir, workers, max_images)
    names = imagenet_classnames() if classnames is None else (
        read_lines(classnames, "class names") if isinstance(classnames, (str, Path)) else list(classnames))
    templates = list(imagenet_templates()) if templates is None else (
        read_lines(templates, "templates") if isinstance(templates, (str, Path)) else list(templates))
    if not all("{}" in t for t in templates):
        raise DatasetError("every template needs {} where the class name goes")
    samples = image_folder(root, len(names))[:max_images]
    weights = class_embeddings(task, names, templates, progress).numpy()
    job = ZeroShotJob(task, out, weights, {"classes": names, "templates": templates})
    evaluated = run_images(job, root, [s[0] for s in samples], str(root), out=out, workers=workers,
                           overwrite=overwrite, progress=progress, status=status)
    top1 = top5 = scored = 0
    missing, rows = {}, []
    for item, outcomes, bad in evaluated.outcomes():
        name, label = samples[item.index]
        if outcomes is None:
            missing[item.index] = bad or ("not_reached", "")
            rows.append({"image": name, "label": label, "skipped": missing[item.index][0]})
            continue
        top = outcomes[0]["top5"]
        rows.append({"image": name, "label": label, "top5": top})
        scored += 1
        top1 += top[0] == label
        top5 += label in top
    if out is not None and current().main:
        write_all([(Path(out) / PREDICTIONS, write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                                for r in rows)))])
    return {"top1": top1 / scored if scored else None, "top5": top5 / scored if scored else None,
            "images": scored, "images_skipped": len(missing), "skipped_by_reason": bad_counts(missing),
            "classes": len(names), "templates": len(templates), "images_dir": str(root), "model": job.model_name,
            "model_fingerprint": job.fingerprint, "precision": task.settings.precision,
            "max_num_patches": task.settings.max_num_patches or "checkpoint", "complete": max_images is None,
            **class_breakdown(names, rows)}


def format_zeroshot_report(report: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}"

    skipped = f", {report['images_skipped']} skipped" if report["images_skipped"] else ""
    return (f"zero-shot classification: {report['images']} images{skipped}, {report['classes']} classes, "
            f"{report['templates']} templates\n  top-1 {pct(report['top1'])}  top-5 {pct(report['top5'])}")


__all__ = ["evaluate_zeroshot", "format_zeroshot_report", "imagenet_classnames"]
