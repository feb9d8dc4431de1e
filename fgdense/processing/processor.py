"""``FGCLIP2Processor``: a checkpoint's image processor and tokenizer as one object, with the text policy inside.

It has the shape of transformers' ``Siglip2Processor`` (``image_processor`` and ``tokenizer`` attributes,
``from_pretrained``, ``save_pretrained``, ``processor(images=..., text=...)``), but it is a plain class: the
text side applies fgdense's text policy (:func:`fgdense.processing.text.tokenize`: fixed length per walk
type, lower-casing, the tokenizer's own mask), which ``ProcessorMixin``'s generic call would not.

This is the one place that finds the processor and tokenizer a model came with
(:meth:`FGCLIP2Processor.for_model`): a model loaded with ``FGCLIP2Model.from_pretrained`` remembers its
folder (``model.checkpoint_folder``), and that folder's files are the ones it was released with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..checkpoint import resolve_checkpoint
from ..errors import FGDenseError, LabelError
from .image import FGCLIP2ImageProcessor
from .text import load_tokenizer, tokenize


def image_processor_for(model=None, processor=None) -> FGCLIP2ImageProcessor:
    """The image half of ``processor`` (an ``FGCLIP2Processor`` or an ``FGCLIP2ImageProcessor``), else the
    model's checkpoint's own, else the default one; loads no tokenizer."""
    if isinstance(processor, FGCLIP2Processor):
        return processor.image_processor
    if processor is not None:
        return processor
    folder = getattr(model, "checkpoint_folder", None)
    return FGCLIP2ImageProcessor.from_pretrained(folder) if folder else FGCLIP2ImageProcessor()


class FGCLIP2Processor:
    """An ``FGCLIP2ImageProcessor`` and a tokenizer (``None`` for a model built in memory: text work then
    asks for one)."""

    def __init__(self, image_processor: FGCLIP2ImageProcessor | None = None, tokenizer=None):
        self.image_processor = image_processor if image_processor is not None else FGCLIP2ImageProcessor()
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path) -> "FGCLIP2Processor":
        """Both halves from a checkpoint folder or model-hub id (tokenizer files only; never remote code)."""
        folder = resolve_checkpoint(name_or_path)
        return cls(FGCLIP2ImageProcessor.from_pretrained(folder), load_tokenizer(folder))

    @classmethod
    def for_model(cls, model, image_processor=None, tokenizer=None) -> "FGCLIP2Processor":
        """What was given, the rest from the model's checkpoint folder (the default image processor and no
        tokenizer for a model built in memory). ``image_processor`` may itself be an ``FGCLIP2Processor``."""
        if isinstance(image_processor, FGCLIP2Processor):
            if tokenizer is None or tokenizer is image_processor.tokenizer:
                return image_processor
            return cls(image_processor.image_processor, tokenizer)
        folder = getattr(model, "checkpoint_folder", None)
        image_processor = image_processor_for(model, image_processor)
        if tokenizer is None and folder is not None:
            tokenizer = load_tokenizer(folder)
        return cls(image_processor, tokenizer)

    def save_pretrained(self, folder) -> Path:
        """``preprocessor_config.json`` and the tokenizer's files into ``folder``."""
        folder = Path(folder)
        self.image_processor.save_pretrained(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(folder))
        return folder

    def tokenize(self, texts: Sequence[str] | str, walk_type: str = "short", **policy) -> dict:
        """Text inputs by the text policy (``lowercase``, ``text_mask``, ``max_length``: see
        :func:`fgdense.processing.text.tokenize`)."""
        if self.tokenizer is None:
            raise LabelError("this processor has no tokenizer (a model built in memory): give one, "
                             "FGCLIP2Processor(image_processor, tokenizer)")
        return tokenize(self.tokenizer, texts, walk_type, **policy)

    def __call__(self, images=None, text=None, walk_type: str = "short", max_num_patches=None,
                 dynamic_max_patches=None, return_tensors: str = "pt", **policy) -> dict:
        """Model inputs for ``images`` (``pixel_values``, ``pixel_attention_mask``, ``spatial_shapes``),
        ``text`` (``input_ids`` and the tokenizer's ``attention_mask``) or both, in one dict."""
        if images is None and text is None:
            raise FGDenseError("give images, text or both")
        inputs: dict = {}
        if images is not None:
            inputs.update(self.image_processor(images, max_num_patches=max_num_patches,
                                               dynamic_max_patches=dynamic_max_patches,
                                               return_tensors=return_tensors))
        if text is not None:
            inputs.update(self.tokenize(text, walk_type, **policy))
        return inputs

    def __repr__(self) -> str:
        tokenizer = type(self.tokenizer).__name__ if self.tokenizer is not None else None
        return f"FGCLIP2Processor(image_processor={type(self.image_processor).__name__}, tokenizer={tokenizer})"
