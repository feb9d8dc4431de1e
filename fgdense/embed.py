"""Image, text and region embeddings of collections: what retrieval, zero-shot classification and search
are built on, in the shape every task has.

    >>> embedder = Embedder.from_pretrained("qihoo360/fg-clip2-base")
    >>> images = embedder.embed_images_batch(["a.jpg", "b.jpg"])          # (2, D) numpy, normalised
    >>> texts = embedder.embed_texts(["a red car", "一只猫"])              # short walk, 64 tokens
    >>> embedder.scores(images, texts)                                    # sigmoid(scale * cos + bias)

Images are embedded by the vision tower's pooling head (``get_image_features``), at the settings' patch
budget (``None``: the checkpoint's own processing, as the official retrieval scripts). Texts go through
the one text policy (:mod:`fgdense.processing.text`): the walk type says which head and how many tokens
(``short`` and ``box`` 64, ``long`` 196), lower-cased unless ``lowercase=False``. Regions are
RoIAlign embeddings of boxes, as :class:`~fgdense.classify.BoxClassifier` pools them.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import check_walk_type
from .dense import ProcessedImage, loaded, process_image, resolve_budget
from .devices import autocast
from .errors import FGDenseError
from .processing.text import check_texts
from .prompts import TextEncoder
from .regions import RegionTask
from .task import TaskSettings


@dataclasses.dataclass
class Embeddings:
    """N L2-normalised embeddings ``vectors`` (N, D) float32, of ``kind`` ("image", "text" or "region"),
    with what each one is of (``items``: image names, the texts, or ``image#box``)."""

    vectors: np.ndarray
    items: list
    kind: str

    def __len__(self) -> int:
        return len(self.vectors)

    def cosine(self, other: "Embeddings | np.ndarray") -> np.ndarray:
        """(N, M) cosine of these embeddings to ``other``'s."""
        other = other.vectors if isinstance(other, Embeddings) else np.asarray(other, dtype=np.float32)
        return self.vectors @ other.T

    def to_json(self) -> dict:
        return {"kind": self.kind, "dimension": int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0,
                "items": [{"item": item, "embedding": [round(float(v), 6) for v in row]}
                          for item, row in zip(self.items, self.vectors)]}


@dataclasses.dataclass(frozen=True)
class EmbedderSettings(TaskSettings):
    """:class:`~fgdense.task.TaskSettings` plus the texts' ``walk_type`` (short, box, long) and
    ``lowercase`` (the text policy lower-cases; some protocols keep texts as written)."""

    walk_type: str = "short"
    lowercase: bool = True

    def __post_init__(self):
        super().__post_init__()
        try:
            check_walk_type(self.walk_type)
        except ValueError as err:
            raise FGDenseError(str(err)) from None
        if not isinstance(self.lowercase, bool):
            raise FGDenseError(f"lowercase must be True or False, got {self.lowercase!r}")


@torch.no_grad()
def image_embeddings_of_ready(model, ready: list[ProcessedImage], max_batch_tokens: int = 16384,
                              precision: str = "auto") -> torch.Tensor:
    """(N, D) float32 global embeddings, not normalised, of processed images: images of equal patch count
    go through the vision tower together, without padding (so without masks)."""
    if not ready:
        return torch.zeros(0, int(model.config.projection_dim))
    device = model.device
    out: list[torch.Tensor | None] = [None] * len(ready)
    by_length: dict[int, list[int]] = {}
    for index, image in enumerate(ready):
        by_length.setdefault(image.patches, []).append(index)
    with autocast(model, precision):
        for length, indices in by_length.items():
            per_pass = max(1, max_batch_tokens // length)
            for start in range(0, len(indices), per_pass):
                chunk = indices[start : start + per_pass]
                values = torch.stack([ready[i].pixel_values for i in chunk]).to(device)
                shapes = torch.stack([ready[i].spatial_shape for i in chunk]).to(device)
                ones = torch.ones(values.shape[:2], dtype=torch.long, device=device)
                pooled = model.vision_outputs(values, ones, shapes).pooler_output.float().cpu()
                for row, index in enumerate(chunk):
                    out[index] = pooled[row]
    return torch.stack(out)


def _names(images: Sequence) -> list[str]:
    return [str(image) if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__") else f"image {i}"
            for i, image in enumerate(images)]


class Embedder(RegionTask):
    """Embeddings of images, texts and boxes by one checkpoint (see the module docstring)."""

    Settings = EmbedderSettings

    def embed_images(self, image, **overrides) -> Embeddings:
        """The embedding of one image (path, PIL image, array or ProcessedImage) as a (1, D) result."""
        return self.embed_images_batch([image], **overrides)

    def embed_images_batch(self, images: Sequence, progress: bool = False, **overrides) -> Embeddings:
        """(N, D) normalised embeddings of images, ``batch_size`` images decoded and encoded at a time."""
        settings = self.configured(**overrides)
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            raise FGDenseError(f"expected a list of images, got {type(images).__name__}")
        cap = resolve_budget(settings.max_num_patches, self.model.device)
        parts = []
        bar = tqdm(total=len(images), unit="image", desc="images", disable=not progress)
        for start in range(0, len(images), settings.batch_size):
            ready = [self._ready(image, cap) for image in images[start : start + settings.batch_size]]
            parts.append(image_embeddings_of_ready(self.model, ready, settings.max_batch_tokens, settings.precision))
            bar.update(len(ready))
        bar.close()
        vectors = F.normalize(torch.cat(parts), dim=-1) if parts else torch.zeros(0, 0)
        return Embeddings(vectors.numpy().astype(np.float32), _names(images), "image")

    def _ready(self, image, cap) -> ProcessedImage:
        image = loaded(image)
        if isinstance(image, ProcessedImage) and image.budget == cap:
            return image
        return process_image(self.processor, image, cap)

    def embed_texts(self, texts: Sequence[str] | str, **overrides) -> Embeddings:
        """(N, D) normalised text embeddings by the settings' walk type and text policy (each text as
        written, no templates or synonyms: captions and queries)."""
        settings = self.configured(**overrides)
        texts = check_texts(texts, "text")
        key = ("texts", settings.walk_type, settings.text_mask, settings.lowercase)
        if key not in self._encoders:
            self._encoders[key] = TextEncoder(self.model, self.tokenizer, settings.walk_type,
                                              lowercase=settings.lowercase, text_mask=settings.text_mask)
        vectors = self._encoders[key].prompt_embeddings(texts)
        return Embeddings(vectors.float().numpy(), list(texts), "text")

    def embed_regions_batch(self, images: Sequence, boxes: Sequence, progress: bool = False,
                            **overrides) -> list[Embeddings]:
        """Per image, (N_i, D) normalised RoIAlign embeddings of its xyxy boxes (one pass per image)."""
        regions = self.region_features(images, boxes, progress=progress, **overrides)
        out = []
        for name, array, feats in zip(_names(images), boxes, regions):
            array = np.asarray(array, dtype=np.float64).reshape(-1, 4)
            items = [f"{name}#{','.join(str(round(v, 2)) for v in box)}" for box in array.tolist()]
            out.append(Embeddings(F.normalize(feats.float().cpu(), dim=-1).numpy(), items, "region"))
        return out

    def scores(self, images: Embeddings | np.ndarray, texts: Embeddings | np.ndarray) -> np.ndarray:
        """(N, M) FG-CLIP 2's image-text probabilities: sigmoid(exp(logit_scale) * cos + logit_bias)."""
        vectors = images.vectors if isinstance(images, Embeddings) else np.asarray(images, dtype=np.float32)
        return sigmoid_scores(self.model, vectors, texts)


def sigmoid_scores(model, images: np.ndarray, texts) -> np.ndarray:
    """sigmoid(exp(logit_scale) * cos + logit_bias) of normalised (N, D) and (M, D) embeddings, float32
    arithmetic as the official scripts."""
    texts = texts.vectors if isinstance(texts, Embeddings) else np.asarray(texts, dtype=np.float32)
    # Copies (np.array): a memory-mapped index is read-only, and torch wants arrays it may write.
    cos = torch.from_numpy(np.array(images, dtype=np.float32)) @ torch.from_numpy(np.array(texts, dtype=np.float32)).T
    return sigmoid_of_cosine(model, cos)


def sigmoid_of_cosine(model, cos) -> np.ndarray:
    """sigmoid(exp(logit_scale) * cos + logit_bias) of cosines (array or tensor), float32."""
    cos = torch.as_tensor(np.asarray(cos, dtype=np.float32)) if not isinstance(cos, torch.Tensor) else cos.float()
    scale = model.logit_scale.detach().float().cpu().exp()
    bias = model.logit_bias.detach().float().cpu()
    return torch.sigmoid(cos * scale + bias).numpy()


__all__ = ["Embedder", "EmbedderSettings", "Embeddings", "image_embeddings_of_ready", "sigmoid_of_cosine",
           "sigmoid_scores"]
