"""Text encoding with FG-CLIP 2's conventions, so callers cannot get them wrong.

The model was trained on lower-cased text, always padded to ``max_length`` (it pools the LAST position,
padding or not): 64 tokens for ``short`` captions and ``box`` labels, 196 for ``long`` captions.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import CheckpointError
from ..model.modeling import check_walk_type

MAX_LENGTH = {"short": 64, "box": 64, "long": 196}


def load_tokenizer(name_or_path):
    """The checkpoint's tokenizer through ``AutoTokenizer`` (no remote code)."""
    from transformers import AutoTokenizer

    from ..model.loading import resolve_checkpoint

    from transformers.utils import logging as hf_logging

    folder = resolve_checkpoint(name_or_path)
    # AutoTokenizer reads config.json and complains that it does not know model_type "fgclip2";
    # the tokenizer files alone decide the tokenizer, so that message is noise here.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load a tokenizer from {folder}: {err}") from None
    finally:
        hf_logging.set_verbosity(level)


def check_texts(texts: Sequence[str] | str, what: str = "caption") -> list[str]:
    """A non-empty list of strings, or a clear error."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError(f"empty {what} list: give at least one {what}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{what} {index} is a {type(text).__name__}, not a string")
    return texts


def tokenize(tokenizer, texts: Sequence[str] | str, walk_type: str = "short", max_length: int | None = None):
    """``input_ids`` and ``attention_mask`` (B, L) the official way: lower-cased, max_length padding, truncation."""
    walk = check_walk_type(walk_type)
    texts = check_texts(texts)
    encoded = tokenizer(
        [t.lower() for t in texts],
        padding="max_length",
        max_length=max_length or MAX_LENGTH[walk],
        truncation=True,
        return_tensors="pt",
    )
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


@torch.no_grad()
def encode_text(model, tokenizer, texts, walk_type: str = "short", normalize: bool = True, batch_size: int = 256):
    """Text embeddings (B, D) for ``texts`` with the given walk type, L2-normalised by default."""
    texts = check_texts(texts)
    parts = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenize(tokenizer, texts[start : start + batch_size], walk_type)
        # No attention mask, as in the official training (the pooled last position attends to the
        # padding too). The official README passes the tokenizer's whole output, which includes a mask
        # when the tokenizer returns one; call model.get_text_features(ids, mask) for that behaviour.
        feats = model.get_text_features(tokens["input_ids"].to(model.device), walk_type=walk_type)
        parts.append(feats.float())
    feats = torch.cat(parts)
    return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats
