"""Several training datasets in one run (FineHARD and COCO-format alike), drawn with sampling weights."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from ..errors import FGDenseError


class MixedDataset(Dataset):
    """The items of several datasets, with a share of every pass over the data for each.

    ``datasets``: built datasets or mmengine config dicts (``dict(type="CocoRegionDataset", ...)``).
    ``weights``: relative shares of each pass (default: proportional to the datasets' sizes, i.e.
    every item once per pass). A pass has as many items as all datasets together; dataset d gives
    ``round(total * w_d / sum(w))`` of them: its items in a fresh random order, repeated when its
    share is larger than itself, cut short when smaller. :class:`~fgdense.train.data.MonolingualBatchSampler`
    asks :meth:`pass_indices` for the items of each pass; an item is addressed as in the underlying
    datasets, ``(index, pass)``.
    """

    def __init__(self, datasets, weights=None, progress: bool = True):
        from mmengine.registry import DATASETS

        if not datasets:
            raise FGDenseError("MixedDataset needs at least one dataset")
        built = []
        for d in datasets:
            if isinstance(d, dict):
                d = dict(d)
                d.setdefault("progress", progress)
                d = DATASETS.build(d)
            built.append(d)
        self.datasets = built
        sizes = np.array([len(d) for d in built], dtype=np.int64)
        if weights is None:
            weights = sizes.astype(float)
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (len(built),) or not np.all(np.isfinite(weights)) or (weights < 0).any() or weights.sum() <= 0:
            raise FGDenseError(f"MixedDataset weights must be one non-negative number per dataset ({len(built)}), "
                               f"not all zero; got {list(weights)}")
        self.weights = weights / weights.sum()
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.total = int(sizes.sum())
        self.is_cn = np.concatenate([np.asarray(d.is_cn, dtype=bool) for d in built])
        self.metainfo = {"dataset": "mixed", "parts": [getattr(d, "metainfo", {}) for d in built],
                         "weights": self.weights.round(4).tolist()}
        self.report = {f"part {i}": getattr(d, "report", {"items": len(d)}) for i, d in enumerate(built)}

    def __deepcopy__(self, memo):
        # Read-only once built and checked: mmengine deep-copies the dataloader settings that hold it,
        # and a copy of every record would only cost memory.
        return self

    def __len__(self) -> int:
        return self.total

    def share(self) -> np.ndarray:
        """Items per pass from each dataset."""
        return np.round(self.total * self.weights).astype(np.int64)

    def pass_indices(self, epoch: int, seed: int = 0) -> np.ndarray:
        """The (global) item indices of pass ``epoch``, grouped by dataset (the sampler shuffles them)."""
        rng = np.random.default_rng((int(seed), int(epoch), 7919))
        parts = []
        for d, count in enumerate(self.share()):
            size = self.offsets[d + 1] - self.offsets[d]
            if count == 0 or size == 0:
                continue
            repeats = -(-int(count) // int(size))
            order = np.concatenate([rng.permutation(size) for _ in range(repeats)])[:count]
            parts.append(order + self.offsets[d])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, None)
        d = int(np.searchsorted(self.offsets, index, side="right") - 1)
        local = int(index - self.offsets[d])
        return self.datasets[d][(local, epoch)]

    def summary(self) -> str:
        lines = []
        for d, (dataset, weight, count) in enumerate(zip(self.datasets, self.weights, self.share())):
            about = dataset.summary() if hasattr(dataset, "summary") else f"{type(dataset).__name__} of {len(dataset)} items"
            lines.append(f"part {d} (weight {weight:.3f}, {count} items per pass): {about}")
        return "\n".join(lines)
