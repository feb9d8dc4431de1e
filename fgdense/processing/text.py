"""Text to model inputs, by FG-CLIP 2's conventions, so callers cannot get them wrong.

The text policy, in one place:

* texts are padded to a fixed length (the model pools the LAST position, padding or not): 64 tokens for
  ``short`` captions and ``box`` labels, 196 for ``long`` captions, and cut there;
* they are lower-cased, as the model was trained, unless a protocol says otherwise (the official
  BoxClass-CN evaluation keeps names such as ``T恤`` or ``iPhone`` as written);
* the model gets exactly what the checkpoint's tokenizer returns: ``input_ids``, plus the
  ``attention_mask`` when the tokenizer returns one (its ``model_input_names``), as the official
  evaluation scripts and demos pass ``**tokenizer(...)``. ``text_mask="none"`` drops the mask, as the
  official *training* code does (stage-2 training here keeps that convention).
"""

from __future__ import annotations

from typing import Sequence

from ..checkpoint import resolve_checkpoint
from ..config import TEXT_LENGTH, check_walk_type
from ..errors import CheckpointError, LabelError
from ..labels import check_printable, check_texts  # noqa: F401  (part of this module's interface)

TEXT_MASKS = ("tokenizer", "none")


def load_tokenizer(name_or_path):
    """The checkpoint's tokenizer through ``AutoTokenizer`` (never remote code)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = resolve_checkpoint(name_or_path)
    # AutoTokenizer reads config.json and complains that it does not know model_type "fgclip2";
    # the tokenizer files alone decide the tokenizer, so that message is noise here.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"cannot load a tokenizer from {folder}: {str(err)[:200]}") from None
    finally:
        hf_logging.set_verbosity(level)


def check_text_mask(text_mask: str) -> str:
    if text_mask not in TEXT_MASKS:
        raise LabelError(f"unknown text_mask {text_mask!r}; use 'tokenizer' (the mask the tokenizer returns, "
                         "as the official evaluation) or 'none' (input ids only, as the official training)")
    return text_mask


def tokenize(tokenizer, texts: Sequence[str] | str, walk_type: str = "short", *, lowercase: bool = True,
             text_mask: str = "tokenizer", max_length: int | None = None) -> dict:
    """Model inputs for ``texts``: ``input_ids`` (B, L), and ``attention_mask`` (B, L) when the tokenizer
    returns one and ``text_mask`` is ``"tokenizer"`` (see the module docstring)."""
    walk = check_walk_type(walk_type)
    check_text_mask(text_mask)
    texts = check_texts(texts)
    encoded = tokenizer(
        [t.lower() for t in texts] if lowercase else texts,
        padding="max_length",
        max_length=max_length or TEXT_LENGTH[walk],
        truncation=True,
        return_tensors="pt",
    )
    inputs = {"input_ids": encoded["input_ids"]}
    if text_mask == "tokenizer" and "attention_mask" in encoded:
        inputs["attention_mask"] = encoded["attention_mask"]
    return inputs


def token_count(tokenizer, text: str, lowercase: bool = True) -> int:
    """How many tokens ``text`` takes, special tokens included (before padding or cutting)."""
    return len(tokenizer(text.lower() if lowercase else text)["input_ids"])
