"""Label text -> label embeddings: synonyms, optional prompt templates, and a cache.

A label may list synonyms separated by ``|`` (``"cat|猫"``): their embeddings are averaged. With
templates on, each synonym is put into every template of its language (English or Chinese) and the
embeddings are averaged too (the usual CLIP prompt ensembling; off by default, as the official demo
embeds the bare label). Labels use the ``box`` walk type by default: FG-CLIP 2 aligns region and
dense features with ``boxtext_head`` embeddings.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn.functional as F

from .processing.text import check_texts, encode_text

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


def split_synonyms(label: str) -> list[str]:
    """``"cat|猫"`` -> ``["cat", "猫"]``; blank parts are dropped."""
    parts = [part.strip() for part in str(label).split("|")]
    parts = [part for part in parts if part]
    if not parts:
        raise ValueError(f"label {label!r} is empty")
    return parts


def check_labels(labels: Sequence[str] | str, what: str = "label") -> list[str]:
    """A non-empty list of distinct, non-blank labels, or a clear error."""
    labels = check_texts(labels, what)
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):
        split_synonyms(label)
        key = label.strip().lower()
        if key in seen:
            raise ValueError(f"duplicate {what} {label!r} (positions {seen[key]} and {index})")
        seen[key] = index
    return labels


def is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


def expand_prompts(synonym: str, templates: bool | Sequence[str] = False) -> list[str]:
    """The prompts one synonym stands for: itself, or itself in every template of its language."""
    if not templates:
        return [synonym]
    if templates is True:
        templates = CHINESE_TEMPLATES if is_chinese(synonym) else ENGLISH_TEMPLATES
    return [template.format(synonym) for template in templates]


class LabelEncoder:
    """Label embeddings with synonyms and templates, caching every prompt's embedding across calls."""

    def __init__(self, model, tokenizer, walk_type: str = "box"):
        self.model = model
        self.tokenizer = tokenizer
        self.walk_type = walk_type
        self._cache: dict[str, torch.Tensor] = {}

    def prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """Normalised embeddings (P, D) of raw prompts; new prompts are encoded in one batch."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            feats = encode_text(self.model, self.tokenizer, missing, walk_type=self.walk_type).cpu()
            self._cache.update(zip(missing, feats))
        return torch.stack([self._cache[p] for p in prompts])

    def __call__(self, labels: Sequence[str] | str, templates: bool | Sequence[str] = False) -> torch.Tensor:
        """Normalised embeddings (K, D), one per label, averaged over synonyms and templates."""
        labels = check_labels(labels)
        groups = [[p for syn in split_synonyms(label) for p in expand_prompts(syn, templates)] for label in labels]
        flat = self.prompt_embeddings([p for group in groups for p in group])
        out, start = [], 0
        for group in groups:
            out.append(flat[start : start + len(group)].mean(0))
            start += len(group)
        return F.normalize(torch.stack(out), dim=-1)
