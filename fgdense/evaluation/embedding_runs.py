"""What the embedding evaluations (retrieval, zero-shot classification) share: their images as items of a
run on the bulk runner, each image's global embedding computed by :class:`~fgdense.embed.Embedder` and kept
in its record (float32, base64: exact and a quarter the size of decimal text), and the records read back.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Sequence

import numpy as np

from ..bulk.distributed import current
from ..embed import Embedder
from ..errors import DatasetError, FGDenseError
from .runs import Evaluated, RecordJob, dataset_item, evaluate_items, records_folder


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class ImageEmbeddingJob(RecordJob):
    """One image: :meth:`Embedder.embed_images_batch`; its outcome, the normalised embedding."""

    kind = "image embeddings"

    def __init__(self, task: Embedder, out, extra_settings: dict):
        super().__init__(task, out)
        self.extra_settings = dict(extra_settings)

    def compute(self, group):
        return list(self.task.embed_images_batch([p.image for p in group]).vectors)

    def outcomes(self, prepared, result):
        return [{"embedding": encode_vector(result)}]


def checked_inputs(images_dir, workers: int, max_images: int | None) -> Path:
    """The images folder, or one clear error; likewise a negative count."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(f"images folder {images_dir} does not exist")
    if workers < 0 or (max_images is not None and max_images < 0):
        raise FGDenseError("workers must be >= 0 and max_images >= 0")
    return images_dir


def run_images(job: RecordJob, images_dir: Path, names: Sequence[str], source: str, *, out=None, workers: int = 0,
               overwrite: bool = False, progress: bool = True, status=None) -> Evaluated:
    """``job`` over the images ``names`` (relative to ``images_dir``, or absolute where the protocol's file
    gives absolute paths) on the bulk runner; every rank returns every record."""
    ranks = current()

    def items():
        for index, name in enumerate(names):
            where = f"image {name!r} of {source}"
            if Path(name).is_absolute():
                yield dataset_item(index, Path(name).parent, Path(name).name, None, where)
            else:
                yield dataset_item(index, images_dir, name, None, where)

    with records_folder(out, ranks, overwrite) as folder:
        job.out = folder
        job.model_name = str(getattr(job.task.model, "name_or_path", ""))
        return evaluate_items(job, items, workers=workers, overwrite=overwrite, progress=progress, status=status,
                              ranks=ranks)


def embeddings_of(evaluated: Evaluated, count: int) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    """(count, D) embeddings in dataset order (rows of unusable images NaN) and why each unusable one is."""
    rows, missing = {}, {}
    for item, outcomes, bad in evaluated.outcomes():
        if outcomes is not None:
            rows[item.index] = decode_vector(outcomes[0]["embedding"])
        else:
            missing[item.index] = bad or ("not_reached", "the run ended before this image")
    dim = len(next(iter(rows.values()))) if rows else 0
    out = np.full((count, dim), np.nan, dtype=np.float32)
    for index, row in rows.items():
        out[index] = row
    return out, missing


def bad_counts(missing: dict[int, tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason, _ in missing.values():
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


__all__ = ["ImageEmbeddingJob", "bad_counts", "checked_inputs", "decode_vector", "embeddings_of", "encode_vector",
           "run_images"]
