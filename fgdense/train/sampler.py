"""The batch sampler of stage-2 training: every batch one language, on every process at every step."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np


class MonolingualBatchSampler:
    """Batches that hold only English or only Chinese records (the official bilingual grouping).

    Each epoch, each language's records are shuffled (seeded by seed + epoch) and cut into groups of
    ``batch_size x world_size``; the last group of a language is filled up by wrapping around its list,
    so no record is dropped. The groups are shuffled and process r takes the r-th batch of each group:
    at every step all processes see the same language and the same number of batches.
    Yields lists of ``(index, epoch)``.

    A dataset with ``pass_indices(epoch, seed)`` (:class:`~fgdense.train.mixed.MixedDataset`) decides
    which items (repeats allowed) make up each pass; the grouping is then the same.

    ``sampler`` is the mmengine sampler the Runner builds (``DefaultSampler``); only its dataset, seed,
    shuffle flag, rank, world size and epoch (set by the training loop) are used. With ``infinite``
    the sampler runs pass after pass by itself (for iteration-based training: mmengine's loop pauses
    two seconds each time a finite dataloader runs out).
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool = False, infinite: bool = False):
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.infinite = infinite
        self.dataset = sampler.dataset
        self.languages = self._languages(0)

    def _languages(self, epoch: int) -> list[np.ndarray]:
        """The English and the Chinese items of one pass (a weighted draw when the dataset mixes several)."""
        is_cn = np.asarray(self.dataset.is_cn, dtype=bool)
        if hasattr(self.dataset, "pass_indices"):
            indices = self.dataset.pass_indices(epoch, int(getattr(self.sampler, "seed", 0) or 0))
            return [indices[~is_cn[indices]], indices[is_cn[indices]]]
        return [np.flatnonzero(~is_cn), np.flatnonzero(is_cn)]

    def _groups(self, epoch: int) -> list[np.ndarray]:
        shuffle = bool(getattr(self.sampler, "shuffle", True))
        rng = np.random.default_rng((int(getattr(self.sampler, "seed", 0) or 0), epoch))
        world = int(getattr(self.sampler, "world_size", 1))
        size = self.batch_size * world
        groups = []
        for indices in self._languages(epoch):
            if len(indices) == 0:
                continue
            order = rng.permutation(indices) if shuffle else indices
            count = math.ceil(len(order) / size)
            order = np.resize(order, count * size)  # wraps around to fill the last group
            groups += list(order.reshape(count, world, self.batch_size))
        if shuffle:
            groups = [groups[i] for i in rng.permutation(len(groups))]
        return groups

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = int(getattr(self.sampler, "epoch", 0))
        rank = int(getattr(self.sampler, "rank", 0))
        while True:
            for group in self._groups(epoch):
                yield [(int(i), epoch) for i in group[rank]]
            if not self.infinite:
                return
            epoch += 1

    def __len__(self) -> int:
        size = self.batch_size * int(getattr(self.sampler, "world_size", 1))
        return sum(math.ceil(len(ix) / size) for ix in self.languages if len(ix))
