"""Texts -> embeddings, by the one text policy (see :mod:`fgdense.processing.text`); labels with
synonyms, prompt templates, and a cache.

A label may list synonyms separated by ``|`` (``"cat|猫"``): their embeddings are averaged. With
templates on, each synonym is put into every template of its language (English or Chinese) and the
normalised embeddings are averaged and normalised again (CLIP's prompt ensembling, as the official
COCO / LVIS evaluations do; off by default, as the official demo embeds the bare label). Labels use
the ``box`` walk type by default: FG-CLIP 2 aligns region and dense features with ``boxtext_head``
embeddings.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import LabelError
from .labels import check_labels, check_phrases, check_texts, split_synonyms  # noqa: F401  (re-exported)
from .processing.text import check_text_mask, tokenize

ENGLISH_TEMPLATES = (
    "{}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
)
CHINESE_TEMPLATES = (
    "{}",
    "一张{}的照片",
    "这是一张{}的照片",
    "一张{}的特写照片",
    "一张包含{}的图片",
    "图片中的{}",
)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def imagenet_templates() -> tuple[str, ...]:
    """CLIP's 80 ImageNet prompt templates, ``{}`` for the name (see ``fgdense/assets/prompts/README.md``):
    the prompts of the official COCO and LVIS box-classification evaluations."""
    text = resources.files("fgdense").joinpath("assets/prompts/imagenet_templates.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


@torch.no_grad()
def encode_text(model, tokenizer, texts, walk_type: str = "short", *, normalize: bool = True, lowercase: bool = True,
                text_mask: str = "tokenizer", batch_size: int = 256) -> torch.Tensor:
    """Text embeddings (B, D) float32 of ``texts`` with the given walk type, L2-normalised by default.

    Tokenised and fed to the model by the text policy: lower-cased unless ``lowercase=False``, and with
    the attention mask the tokenizer returns unless ``text_mask="none"``.
    """
    texts = check_texts(texts)
    parts = []
    for start in range(0, len(texts), batch_size):
        inputs = tokenize(tokenizer, texts[start : start + batch_size], walk_type, lowercase=lowercase,
                          text_mask=text_mask)
        inputs = {name: value.to(model.device) for name, value in inputs.items()}
        parts.append(model.get_text_features(**inputs, walk_type=walk_type).float())
    feats = torch.cat(parts)
    return F.normalize(feats, dim=-1) if normalize else feats


def is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


def expand_prompts(synonym: str, templates: bool | Sequence[str] = False) -> list[str]:
    """The prompts one synonym stands for: itself, or itself in every template of its language."""
    if not templates:
        return [synonym]
    if templates is True:
        templates = CHINESE_TEMPLATES if is_chinese(synonym) else ENGLISH_TEMPLATES
    return [template.format(synonym) for template in templates]


class EncodedLabels:
    """Labels whose embeddings are made already (an evaluation protocol's prompt ensembles, a vocabulary
    kept between runs): the names and their (K, D) normalised embeddings. Tasks take it wherever they
    take a label list, and use the embeddings as they are."""

    def __init__(self, names: Sequence[str], embeddings: torch.Tensor):
        self.names = [str(name) for name in names]
        if embeddings.ndim != 2 or embeddings.shape[0] != len(self.names) or not self.names:
            raise LabelError(f"need one embedding row per label: {len(self.names)} labels, "
                             f"embeddings of shape {tuple(embeddings.shape)}")
        self.embeddings = embeddings

    def __len__(self) -> int:
        return len(self.names)


class TextEncoder:
    """Embeddings of texts by one walk type and text policy, each prompt encoded once across calls.

    ``lowercase`` and ``text_mask`` are the text policy's two switches (see :mod:`fgdense.processing.text`);
    ``cache=False`` keeps nothing between calls (for one-off sets such as 96k evaluation prompts).
    """

    def __init__(self, model, tokenizer, walk_type: str = "box", *, lowercase: bool = True,
                 text_mask: str = "tokenizer", cache: bool = True):
        if tokenizer is None:
            raise LabelError("a tokenizer is needed to encode text: pass tokenizer= or load with from_pretrained")
        self.model = model
        self.tokenizer = tokenizer
        self.walk_type = walk_type
        self.lowercase = lowercase
        self.text_mask = check_text_mask(text_mask)
        self.cache = cache
        self._cache: dict[str, torch.Tensor] = {}

    def prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """Normalised embeddings (P, D) of raw prompts; new prompts are encoded in one batch."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            feats = encode_text(self.model, self.tokenizer, missing, walk_type=self.walk_type,
                                lowercase=self.lowercase, text_mask=self.text_mask).cpu()
            if not self.cache:
                known = dict(zip(missing, feats))
                return torch.stack([self._cache.get(p, known.get(p)) for p in prompts])
            self._cache.update(zip(missing, feats))
        return torch.stack([self._cache[p] for p in prompts])

    def group_embeddings(self, groups: Sequence[Sequence[str]], progress: bool = False,
                         chunk_prompts: int = 4096) -> torch.Tensor:
        """(K, D): per group of prompts, the normalised mean of their normalised embeddings.

        Groups are encoded a chunk of about ``chunk_prompts`` prompts at a time, so 1203 LVIS categories
        times 80 templates never sit in memory at once.
        """
        from tqdm.auto import tqdm

        out, chunk, size = [], [], 0
        bar = tqdm(total=len(groups), desc="encoding texts", unit="group", disable=not progress)

        def flush():
            flat = self.prompt_embeddings([p for group in chunk for p in group])
            start = 0
            for group in chunk:
                out.append(flat[start : start + len(group)].mean(0))
                start += len(group)
            bar.update(len(chunk))

        for group in groups:
            if chunk and size + len(group) > chunk_prompts:
                flush()
                chunk, size = [], 0
            chunk.append(list(group))
            size += len(group)
        if chunk:
            flush()
        bar.close()
        return F.normalize(torch.stack(out), dim=-1)

    def labels(self, labels: Sequence[str] | str, templates: bool | Sequence[str] = False) -> torch.Tensor:
        """Normalised embeddings (K, D), one per label, averaged over its synonyms and templates."""
        labels = check_labels(labels)
        return self.group_embeddings([[p for syn in split_synonyms(label) for p in expand_prompts(syn, templates)]
                                      for label in labels])

    __call__ = labels


__all__ = ["CHINESE_TEMPLATES", "ENGLISH_TEMPLATES", "EncodedLabels", "TextEncoder", "check_labels", "check_phrases", "encode_text",
           "expand_prompts", "imagenet_templates", "is_chinese", "split_synonyms"]
