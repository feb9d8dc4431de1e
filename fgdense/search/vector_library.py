"""A FAISS index beside a compiled search index, for collections past what the numpy default serves.

The default (:mod:`fgdense.search.query`) scores every row per query: exact, and nothing to install, but
its time and disk reads grow with the collection. FAISS (``pip install fgdense[faiss]``, i.e. faiss-cpu)
keeps the same normalised vectors in one of two indexes, written next to ``images.npy``/``regions.npy``:

* ``flat``: exact inner product (the default's answers, FAISS's speed);
* ``ivfpq``: approximate and compressed (inverted lists over k-means cells, product-quantised codes: about
  a 16th of the vectors' size), for millions of rows; ``nprobe`` cells are searched per query.

Images are still ranked by the sigmoid of their cosine (a monotonic map, applied to what FAISS returns).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError, FGDenseError

KINDS = ("flat", "ivfpq")
FILES = {"images": "images.faiss", "regions": "regions.faiss"}
ADD_BLOCK = 65536  # rows added at once: the memory-mapped arrays are never read whole
MIN_IVFPQ_ROWS = 1000  # k-means cells and 256-centroid codebooks need rows to train on
NPROBE = 16  # cells searched per query by an ivfpq index


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise FGDenseError("the FAISS backend needs faiss: pip install faiss-cpu (or fgdense[faiss])") from None
    return faiss


def _subquantizers(dim: int) -> int:
    """The most product-quantiser pieces (at most 64) that split ``dim`` evenly with 2+ numbers each."""
    return next(m for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1) if dim % m == 0 and dim // m >= 2 or m == 1)


def _new_index(faiss, vectors, kind: str):
    rows, dim = vectors.shape
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if rows < MIN_IVFPQ_ROWS:
        raise FGDenseError(f"an ivfpq index needs at least {MIN_IVFPQ_ROWS} rows to train on, this one has {rows}; "
                           "use --faiss flat (exact) for a collection this small")
    cells = max(1, min(int(4 * math.sqrt(rows)), rows // 39))  # FAISS wants about 39 training rows per cell
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, cells, _subquantizers(dim), 8, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(rows, size=min(rows, 256 * cells), replace=False)
    index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    return index


def build_faiss(search_index, kind: str = "flat") -> list[Path]:
    """Write ``images.faiss`` (and ``regions.faiss`` when the index holds regions) into the index's folder,
    each all-or-nothing; returns their paths."""
    if kind not in KINDS:
        raise FGDenseError(f"unknown FAISS index kind {kind!r}; use one of {', '.join(KINDS)}")
    faiss = faiss_module()
    written = []
    for name, vectors in (("images", search_index.images), ("regions", search_index.regions)):
        path = Path(search_index.folder) / FILES[name]
        if not len(vectors):
            path.unlink(missing_ok=True)  # an index of another build would not match this one
            continue
        index = _new_index(faiss, vectors, kind)
        for start in range(0, len(vectors), ADD_BLOCK):
            index.add(np.ascontiguousarray(vectors[start : start + ADD_BLOCK], dtype=np.float32))
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            faiss.write_index(index, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written


def faiss_top_k(search_index, name: str, query: np.ndarray, k: int, score=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fgdense.search.query.top_k` answered by the FAISS index ``name`` ("images" or "regions")."""
    faiss = faiss_module()
    path = Path(search_index.folder) / FILES[name]
    if not path.is_file():
        raise DatasetError(f"{search_index.folder} has no FAISS index; build one with: tools/search.py index ... "
                           f"--out {search_index.folder} --faiss flat")
    index = faiss.read_index(str(path))
    if index.ntotal != len(getattr(search_index, name)):
        raise DatasetError(f"the FAISS index in {search_index.folder} was built for another version of this index; "
                           "build it again (tools/search.py index ... --faiss KIND)")
    if hasattr(index, "nprobe"):
        index.nprobe = NPROBE
    cosines, rows = index.search(np.ascontiguousarray(query[None], dtype=np.float32), min(k, index.ntotal))
    found = rows[0] >= 0  # an approximate index may return fewer than k
    rows, cosines = rows[0][found].astype(np.int64), cosines[0][found].astype(np.float32)
    return rows, (score(cosines).astype(np.float32) if score is not None else cosines)


__all__ = ["FILES", "KINDS", "build_faiss", "faiss_module", "faiss_top_k"]
