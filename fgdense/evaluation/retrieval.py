"""Image-text retrieval (COCO, Flickr30k, COCO-CN, Flickr30k-CNA, DCI, ShareGPT4V-1k, LIT-CN, DCI-CN,
DOCCI-CN) with the protocols of FG-CLIP 2's published numbers.

Each image's global embedding comes from :class:`~fgdense.embed.Embedder` (the checkpoint's own processing
by default, as the official scripts) on the bulk runner, a record per image; the captions are embedded by
the protocol's walk type and casing (:mod:`fgdense.evaluation.retrieval_data`). The similarity is the
official sigmoid(exp(logit_scale) * cos + logit_bias). An image's query is right at k when one of its
captions is among the k best texts, a caption's when its image is among the k best images; "among the k
best" means fewer than k candidates score strictly higher (a tie counts as right: the official scripts'
argsort leaves ties to chance). An image that cannot be used is left out with its captions, and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bulk.distributed import current
from ..embed import Embedder, sigmoid_scores
from ..io.files import write_json
from .embedding_runs import ImageEmbeddingJob, bad_counts, checked_inputs, embeddings_of, run_images
from .retrieval_data import RANKS, RetrievalProtocol, RetrievalSet, load_retrieval_set, protocol_named

KS = (1, 5, 10)
ROWS = 1024  # similarity rows held at once: memory stays bounded for any set


def ranks_of_truth(similarity_rows: np.ndarray, truth: list[list[int]]) -> np.ndarray:
    """Per row, how many columns score strictly higher than the row's best true column."""
    best = np.array([similarity_rows[r, cols].max() for r, cols in enumerate(truth)], dtype=similarity_rows.dtype)
    return (similarity_rows > best[:, None]).sum(axis=1)


def query_ranks(model, images: np.ndarray, texts: np.ndarray, owner: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's and each text's rank of its best true answer (0: first) among normalised image and
    text embeddings; ``owner[t]`` is the row of text ``t``'s image."""
    captions_of: list[list[int]] = [[] for _ in range(len(images))]
    for t, i in enumerate(owner):
        captions_of[i].append(t)
    i2t = np.concatenate([ranks_of_truth(sigmoid_scores(model, images[s : s + ROWS], texts), captions_of[s : s + ROWS])
                          for s in range(0, len(images), ROWS)])
    t2i = np.concatenate([ranks_of_truth(sigmoid_scores(model, texts[s : s + ROWS], images),
                                         [[i] for i in owner[s : s + ROWS]])
                          for s in range(0, len(texts), ROWS)])
    return i2t, t2i


def best_matches(model, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Each query's best-scoring candidate (its index), a block of queries at a time."""
    return np.concatenate([sigmoid_scores(model, queries[s : s + ROWS], candidates).argmax(axis=1)
                           for s in range(0, len(queries), ROWS)])


def recalls(model, images: np.ndarray, texts: np.ndarray, owner: list[int]) -> dict:
    """i2t / t2i recall at 1, 5, 10 (fractions); arguments as :func:`query_ranks`."""
    i2t, t2i = query_ranks(model, images, texts, owner)
    out = {}
    for k in KS:
        out[f"i2t_r{k}"] = float((i2t < k).mean())
    for k in KS:
        out[f"t2i_r{k}"] = float((t2i < k).mean())
    return out


def _as_embedder(model) -> Embedder:
    return model if isinstance(model, Embedder) else Embedder(model, precision="fp32")


def evaluate_retrieval(embedder, annotations, images_dir, protocol: str | RetrievalProtocol, *, out=None,
                       workers: int = 0, max_images: int | None = None, overwrite: bool = False,
                       progress: bool = True, status=None) -> dict:
    """Retrieval recalls of ``embedder`` (an :class:`Embedder`, or a model measured as ``Embedder(model,
    precision="fp32")``) on ``annotations`` read by ``protocol`` (a name of
    :data:`~fgdense.evaluation.retrieval_data.PROTOCOLS`); returns the report.

    Images are found under ``images_dir`` (absolute paths in a file are used as they are). ``out`` keeps
    each image's record in ``out/records``, so the same call again skips the images already embedded.
    ``max_images``: only the set's first images (the report says ``complete: false``). Every rank of a
    ``torch.distributed`` run calls this and returns the same report.
    """
    task = _as_embedder(embedder)
    chosen = protocol if isinstance(protocol, RetrievalProtocol) else protocol_named(protocol)
    images_dir = checked_inputs(images_dir, workers, max_images)
    data = annotations if isinstance(annotations, RetrievalSet) else load_retrieval_set(annotations, chosen)
    names, captions = data.images[:max_images], data.captions[:max_images]
    job = ImageEmbeddingJob(task, out, {"protocol": chosen.name})
    evaluated = run_images(job, images_dir, names, data.source, out=out, workers=workers, overwrite=overwrite,
                           progress=progress, status=status)
    vectors, missing = embeddings_of(evaluated, len(names))
    usable = [i for i in range(len(names)) if i not in missing]
    texts, owner = [], []
    for row, index in enumerate(usable):
        texts += captions[index]
        owner += [row] * len(captions[index])
    report = {"protocol": chosen.name, "protocol_description": chosen.describe(), "annotations_file": data.source,
              "images_dir": str(images_dir), "model": job.model_name, "model_fingerprint": job.fingerprint,
              "walk_type": chosen.walk_type, "lowercase": chosen.lowercase,
              "precision": task.settings.precision, "text_mask": task.settings.text_mask,
              "max_num_patches": task.settings.max_num_patches or "checkpoint",
              "images": len(usable), "captions": len(texts), "images_skipped": len(missing),
              "skipped_by_reason": bad_counts(missing), "complete": max_images is None or max_images >= len(data.images)}
    if not usable:
        if out is not None and current().main:  # no query: --plot draws this run's (none), not an earlier run's
            _write_ranks(out, [], images_dir, [], [])
        return dict(report, **{f"{d}_r{k}": None for d in ("i2t", "t2i") for k in KS})
    text = task.embed_texts(texts, walk_type=chosen.walk_type, lowercase=chosen.lowercase).vectors
    i2t, t2i = query_ranks(task.model, vectors[usable], text, owner)
    if out is not None and current().main:
        _write_ranks(out, [names[i] for i in usable], images_dir, texts, owner, i2t, t2i,
                     best_matches(task.model, text, vectors[usable]))
    return dict(report, **{f"i2t_r{k}": float((i2t < k).mean()) for k in KS},
                **{f"t2i_r{k}": float((t2i < k).mean()) for k in KS})


def _write_ranks(out, images: list, images_dir, texts: list, owner: list, i2t=(), t2i=(), t2i_best=()) -> None:
    """``OUT/ranks.json``, what ``--plot`` draws: every query's rank of its best true answer (0: first;
    ``i2t`` per image, ``t2i`` per caption), each caption's image (``owner``) and the image it found first
    (``t2i_best``); lists left empty when nothing was scored."""
    write_json(Path(out) / RANKS, {"images": images, "images_dir": str(images_dir), "i2t": np.asarray(i2t).tolist(),
                                   "texts": texts, "owner": owner, "t2i": np.asarray(t2i).tolist(),
                                   "t2i_best": np.asarray(t2i_best).tolist()})


def format_retrieval_report(report: dict) -> str:
    lines = [f"retrieval ({report['protocol']}): {report['images']} images, {report['captions']} captions"
             + (f", {report['images_skipped']} image(s) skipped" if report["images_skipped"] else "")]
    for direction, name in (("i2t", "image -> text"), ("t2i", "text -> image")):
        values = [report[f"{direction}_r{k}"] for k in KS]
        shown = "  ".join(f"R@{k} {'-' if v is None else f'{100 * v:.2f}'}" for k, v in zip(KS, values))
        lines.append(f"  {name}: {shown}")
    return "\n".join(lines)


__all__ = ["evaluate_retrieval", "format_retrieval_report", "query_ranks", "recalls"]
