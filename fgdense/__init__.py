"""fgdense: open-vocabulary dense prediction on FG-CLIP 2."""

from .errors import BoxError, CheckpointError, FGDenseError, ImageLoadError
from .model import FGCLIP2Config, FGCLIP2Model
from .model.siglip2_init import init_from_siglip2
from .processing import FGCLIP2ImageProcessor, encode_text, load_image, load_tokenizer, tokenize

__version__ = "0.1.0"
