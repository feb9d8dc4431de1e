from .image import FGCLIP2ImageProcessor, dynamic_budget, load_image, to_rgb
from .text import MAX_LENGTH, check_texts, encode_text, load_tokenizer, tokenize

__all__ = ["FGCLIP2ImageProcessor", "dynamic_budget", "load_image", "to_rgb", "MAX_LENGTH", "check_texts",
           "encode_text", "load_tokenizer", "tokenize"]
