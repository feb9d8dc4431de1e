"""Answering text queries, English or Chinese, from a compiled index (:mod:`fgdense.search.index`).

The arrays are read memory-mapped and scored a block of rows at a time, keeping the best k: memory stays
bounded by the block, not the collection, so the index may be larger than RAM (each query then reads the
whole array from disk once). Images are ranked by FG-CLIP 2's image-text probability, sigmoid(exp(scale)
* cos + bias) of the query's ``short``-walk embedding; regions by the cosine of their RoIAlign embedding to
the query's ``box``-walk embedding, as box classification scores them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..embed import Embedder, sigmoid_of_cosine
from ..errors import DatasetError
from .index import IMAGES, META, REGIONS

BLOCK = 65536  # rows scored at once


@dataclass
class SearchIndex:
    """A compiled index: ``images`` (N, D) and ``regions`` (R, D) memory-mapped, ``meta`` its index.json."""

    folder: Path
    images: np.ndarray
    regions: np.ndarray
    meta: dict

    @classmethod
    def open(cls, folder) -> "SearchIndex":
        folder = Path(folder)
        paths = [folder / IMAGES, folder / REGIONS, folder / META]
        if not all(p.is_file() for p in paths):
            raise DatasetError(f"{folder} is not a search index (build one with: tools/search.py index ... --out "
                               f"{folder})")
        try:
            meta = json.loads(paths[2].read_text(encoding="utf-8"))
            images = np.load(paths[0], mmap_mode="r")
            regions = np.load(paths[1], mmap_mode="r") if paths[1].stat().st_size > 128 else np.load(paths[1])
        except (OSError, ValueError) as err:
            raise DatasetError(f"cannot read the search index in {folder}: {err}") from None
        if len(images) != len(meta["images"]) or len(regions) != len(meta["regions"]):
            raise DatasetError(f"the search index in {folder} is inconsistent; build it again")
        return cls(folder, images, regions, meta)


def top_k(vectors: np.ndarray, query: np.ndarray, k: int, score=None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best rows of ``vectors`` for a normalised ``query`` (D,), best first;
    ``score`` turns a block's cosines into the ranking score (the cosine itself by default)."""
    best_rows, best_scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    for start in range(0, len(vectors), BLOCK):
        block = np.asarray(vectors[start : start + BLOCK], dtype=np.float32) @ query
        block = score(block) if score is not None else block
        rows = np.concatenate([best_rows, np.arange(start, start + len(block))])
        scores = np.concatenate([best_scores, block.astype(np.float32)])
        keep = np.argsort(-scores, kind="stable")[:k]
        best_rows, best_scores = rows[keep], scores[keep]
    return best_rows, best_scores


def _ranked(index: SearchIndex, name: str, query: np.ndarray, k: int, score, backend: str):
    if backend == "faiss":
        from .vector_library import faiss_top_k

        return faiss_top_k(index, name, query, k, score)
    if backend != "numpy":
        raise DatasetError(f"unknown search backend {backend!r}; use numpy or faiss")
    return top_k(getattr(index, name), query, k, score)


def search(embedder: Embedder, index: SearchIndex, query: str, k: int = 10, regions: bool = False,
           backend: str = "numpy") -> list[dict]:
    """The k images (or, with ``regions``, boxes) that fit ``query`` best, best first, JSON-ready.
    ``backend``: ``numpy`` (exact, the arrays memory-mapped) or ``faiss`` (the index's FAISS index,
    :mod:`fgdense.search.vector_library`)."""
    if regions and not len(index.regions):
        raise DatasetError(f"the index in {index.folder} holds no regions (build it with --regions)")
    if regions:
        text = embedder.embed_texts([query], walk_type="box").vectors[0]
        rows, scores = _ranked(index, "regions", text, k, None, backend)
        found = []
        for row, score in zip(rows.tolist(), scores.tolist()):
            region = index.meta["regions"][row]
            image = index.meta["images"][region["image"]]
            found.append({"image": image["path"], "xyxy": region["xyxy"], "cosine": round(float(score), 6)})
        return found
    text = embedder.embed_texts([query], walk_type="short").vectors
    rows, scores = _ranked(index, "images", text[0], k, lambda cos: sigmoid_of_cosine(embedder.model, cos), backend)
    return [{"image": index.meta["images"][row]["path"], "score": round(float(score), 6)}
            for row, score in zip(rows.tolist(), scores.tolist())]


__all__ = ["SearchIndex", "search", "top_k"]
