"""Dense features computed once per image and patch budget, and reused while labels or phrases change.

The backbone pass is the expensive part of every task (seconds on a CPU at 1024 patches); text
embeddings are cached by :class:`~fgdense.prompts.TextEncoder` already. So a page where a person tries
label after label on one photo keeps that photo's features: :class:`FeatureCache` is a small
least-recently-used store keyed by the image's *content* (not its file name: a re-upload of the same
photo is a hit) and by the patch budget and precision the features were computed at.

Every task gets image features through one method, :meth:`fgdense.task.Task.image_features`; the
:class:`CachedFeatures` mixin overrides it, so segmentation, box classification and grounding on one
model can share one cache (:func:`cached_task`). ``computed`` and ``reused`` count images, so tests
can prove that a label change did not recompute anything.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Sequence

from ..dense import DenseFeatures, resolve_budget, rgb_of

DEFAULT_CAPACITY = 6  # images x budgets; 16384 patches x 1152 dims in fp32 is ~75 MB an entry


def image_digest(image) -> str:
    """A digest of an RGB PIL image's pixels and size: equal for equal pictures, whatever their file."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.mode}:{image.width}x{image.height}".encode())
    return digest.hexdigest()


class FeatureCache:
    """Least-recently-used :class:`~fgdense.dense.DenseFeatures`, keyed by image content and budget.

    ``computed``: images whose features were computed; ``reused``: images served from the cache.
    Safe to share between threads (a web server's workers).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive whole number, got {capacity!r}")
        self.capacity = capacity
        self.computed = 0
        self.reused = 0
        self._entries: OrderedDict[tuple, DenseFeatures] = OrderedDict()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def features(self, images: Sequence, context: tuple,
                 compute: Callable[[list], list[DenseFeatures]]) -> list[DenseFeatures]:
        """Features of ``images`` (RGB PIL images) under ``context`` (what else decides them: model,
        budget, precision); ``compute`` is called once, on the images not in the cache, in order."""
        keys = [(image_digest(image), *context) for image in images]
        with self._lock:
            found = {key: self._entries[key] for key in keys if key in self._entries}
            # An image given twice in one call is computed once.
            todo = list(dict.fromkeys(key for key in keys if key not in found))
            if todo:
                first = {key: images[keys.index(key)] for key in todo}
                for key, feats in zip(todo, compute([first[key] for key in todo])):
                    found[key] = feats
                    self._entries[key] = feats
            for key in keys:
                self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            self.computed += len(todo)
            self.reused += len(keys) - len(todo)
            return [found[key] for key in keys]


class CachedFeatures:
    """Mixin for a :class:`~fgdense.task.Task`: its image features go through a shared :class:`FeatureCache`.

    ``class CachedSegmenter(CachedFeatures, Segmenter)``, built with ``feature_cache=cache`` beside the
    task's usual arguments.
    """

    def __init__(self, *args, feature_cache: FeatureCache, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_cache = feature_cache

    def image_features(self, images: Sequence, settings=None) -> list[DenseFeatures]:
        settings = settings or self.settings
        rgb = [rgb_of(image) for image in images]  # paths, arrays and ProcessedImages alike
        # The budget as it resolves on this device, so "auto" and 1024 on a CPU share their entry; the
        # model and processor are part of the key, so a cache shared by mistake never mixes models.
        context = (id(self.model), id(self.processor), resolve_budget(settings.max_num_patches, self.model.device),
                   settings.precision)
        parent = super()
        return self.feature_cache.features(rgb, context, lambda todo: parent.image_features(todo, settings))


def cached_task(task_class: type) -> type:
    """``task_class`` with :class:`CachedFeatures` mixed in (``cached_task(Segmenter)(model, feature_cache=...)``)."""
    return type(f"Cached{task_class.__name__}", (CachedFeatures, task_class), {"__module__": __name__})


__all__ = ["CachedFeatures", "DEFAULT_CAPACITY", "FeatureCache", "cached_task", "image_digest"]
