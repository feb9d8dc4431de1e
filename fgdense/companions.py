"""The image processor and tokenizer that come with a model's checkpoint: one way to find them.

A model loaded with ``FGCLIP2Model.from_pretrained`` remembers its folder (``model.checkpoint_folder``);
the processor and tokenizer of that folder are the ones it was released with.
"""

from __future__ import annotations

from .processing.image import FGCLIP2ImageProcessor
from .processing.text import load_tokenizer


def processor_for(model, processor=None) -> FGCLIP2ImageProcessor:
    """``processor``, else the model's checkpoint's own image processor, else the default one."""
    if processor is not None:
        return processor
    folder = getattr(model, "checkpoint_folder", None)
    return FGCLIP2ImageProcessor.from_pretrained(folder) if folder else FGCLIP2ImageProcessor()


def tokenizer_for(model, tokenizer=None):
    """``tokenizer``, else the model's checkpoint's own; None for a model built in memory (text work then
    asks for one to be given)."""
    if tokenizer is not None:
        return tokenizer
    folder = getattr(model, "checkpoint_folder", None)
    return None if folder is None else load_tokenizer(folder)
