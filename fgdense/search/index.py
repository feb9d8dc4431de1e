"""Building a search index of a collection: each image's embedding (and, with regions, its boxes'), one part
file per image on the bulk runner (sharded, resumable), then one set of memory-mapped arrays.

An index folder holds ``parts/`` (one JSON per image: the run hash, the image's embedding, its regions'
boxes and embeddings; what makes a build resumable), and, compiled from the parts once every image is done:
``images.npy`` (N, D) float32 normalised image embeddings, ``regions.npy`` (R, D) region embeddings and
``index.json`` (the model, each image's path and size, each region's image and box). Arrays are written
all-or-nothing; a query reads them memory-mapped (:mod:`fgdense.search.query`).

Regions are the boxes a JSONL manifest gives for an image, or else proposed: windows of a fixed grid at
two scales (halves and thirds of the image, overlapping by half) plus the whole image, query-independent
so one index answers any query.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..bulk.jobs import RUN_KEY, Job, outputs_complete, run_hash
from ..embed import Embedder
from ..errors import OutputError
from ..evaluation.embedding_runs import decode_vector, encode_vector
from ..io.files import write_all, write_json
from ..io.sources import Sources

PARTS = "parts"
IMAGES, REGIONS, META = "images.npy", "regions.npy", "index.json"
GRID_SCALES = (2, 3)  # proposed windows: 1/2 and 1/3 of each side, at half-window strides


def grid_boxes(height: int, width: int) -> np.ndarray:
    """(R, 4) xyxy proposals of an image: the whole image and windows of each grid scale."""
    boxes = [[0.0, 0.0, float(width), float(height)]]
    for scale in GRID_SCALES:
        bw, bh = width / scale, height / scale
        steps = 2 * scale - 1
        for j in range(steps):
            for i in range(steps):
                x, y = i * bw / 2, j * bh / 2
                boxes.append([round(x, 2), round(y, 2), round(min(width, x + bw), 2), round(min(height, y + bh), 2)])
    return np.asarray(boxes, dtype=np.float64)


class IndexJob(Job):
    """One image: its global embedding and (with ``regions``) its boxes' region embeddings."""

    kind = "index"
    boxes = "optional"

    def __init__(self, task: Embedder, out, regions: bool, **kwargs):
        super().__init__(task, out, pictures=False, **kwargs)
        self.regions = regions
        self.extra_settings = {"regions": regions, "proposals": list(GRID_SCALES)}

    def suffixes(self):
        return (".json",)

    def compute(self, group):
        images = self.task.embed_images_batch([p.image for p in group]).vectors
        if not self.regions:
            return [(row, None, None) for row in images]
        boxes = [p.boxes if p.boxes is not None else grid_boxes(p.image.image.height, p.image.image.width)
                 for p in group]
        regions = self.task.embed_regions_batch([p.image for p in group], boxes)
        return [(row, np.asarray(b), r.vectors) for row, b, r in zip(images, boxes, regions)]

    def write(self, prepared, result):
        row, boxes, regions = result
        image = prepared.image.image
        payload = {RUN_KEY: prepared.run, "image": os.path.abspath(prepared.item.path), "size_hw": [image.height, image.width],
                   "embedding": encode_vector(row), "regions": []}
        if boxes is not None:
            payload["regions"] = [{"xyxy": [round(float(v), 2) for v in box], "embedding": encode_vector(vec)}
                                  for box, vec in zip(boxes, regions)]
        write_json(Path(self.out) / f"{prepared.item.name}.json", payload)


def _done_parts(job: IndexJob, sources: Sources):
    """(item, part) of every image whose part is complete and of this build, in the sources' order."""
    preparer = job.preparer()
    for item in sources.items(job.output_files):
        if item.problem is not None:
            continue
        path = Path(job.out) / f"{item.name}.json"
        if outputs_complete([path], run_hash(preparer.settings, item)):
            yield item, json.loads(path.read_text(encoding="utf-8"))


def compile_index(job: IndexJob, sources: Sources, folder: Path, model_name: str) -> dict:
    """Write ``images.npy``, ``regions.npy`` and ``index.json`` from the parts (two passes over them, so
    memory holds one part at a time besides the arrays being filled on disk). Returns the index's meta."""
    images, regions = [], []
    dim = 0
    for item, part in _done_parts(job, sources):
        images.append({"path": part["image"], "size_hw": part["size_hw"]})
        regions += [{"image": len(images) - 1, "xyxy": r["xyxy"]} for r in part["regions"]]
        dim = dim or len(decode_vector(part["embedding"]))
    if not images:
        raise OutputError(f"no image of the collection could be indexed; nothing written to {folder}")

    def fill(kind: str, rows: int):
        def write(tmp):
            if rows == 0:  # an empty file cannot be memory-mapped
                with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a name
                    np.save(f, np.zeros((0, dim), dtype=np.float32), allow_pickle=False)
                return
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, dim))
            at = 0
            for _, part in _done_parts(job, sources):
                vectors = [part["embedding"]] if kind == "images" else [r["embedding"] for r in part["regions"]]
                for vector in vectors:
                    array[at] = decode_vector(vector)
                    at += 1
            array.flush()
            del array
        return write

    meta = {"model": model_name, "model_fingerprint": job.fingerprint, "dimension": dim,
            "max_num_patches": job.task.settings.max_num_patches or "checkpoint", "regions_indexed": job.regions,
            "images": images, "regions": regions}
    write_all([(folder / IMAGES, fill("images", len(images))), (folder / REGIONS, fill("regions", len(regions))),
               (folder / META, lambda tmp: Path(tmp).write_text(json.dumps(meta, ensure_ascii=False), "utf-8"))])
    return meta


__all__ = ["IMAGES", "IndexJob", "META", "PARTS", "REGIONS", "compile_index", "grid_boxes"]
