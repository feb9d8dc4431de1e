"""NaFlex images and text to model inputs (a sibling of fgdense.model; both share fgdense.config)."""

from .image import FGCLIP2ImageProcessor, decode_as_stored, dynamic_budget, load_image, to_rgb
from .processor import FGCLIP2Processor, image_processor_for
from .text import (TEXT_MASKS, check_printable, check_text_mask, check_texts, load_tokenizer, token_count,
                   tokenize)

__all__ = ["FGCLIP2ImageProcessor", "FGCLIP2Processor", "image_processor_for", "decode_as_stored", "dynamic_budget", "load_image", "to_rgb",
           "TEXT_MASKS", "check_printable", "check_text_mask", "check_texts", "load_tokenizer", "token_count",
           "tokenize"]
