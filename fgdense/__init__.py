"""fgdense: open-vocabulary dense prediction on FG-CLIP 2."""

from .dense import DenseFeatures, dense_features, dense_features_batch
from .errors import BoxError, CheckpointError, FGDenseError, ImageLoadError
from .model import FGCLIP2Config, FGCLIP2Model
from .model.siglip2_init import init_from_siglip2
from .processing import FGCLIP2ImageProcessor, encode_text, load_image, load_tokenizer, tokenize
from .regions import BoxClassification, BoxClassifier, Grounder, Grounding
from .segment import SegmentationResult, Segmenter

__version__ = "0.1.0"

__all__ = [
    "BoxClassification", "BoxClassifier", "BoxError", "CheckpointError", "DenseFeatures", "FGCLIP2Config",
    "FGCLIP2ImageProcessor", "FGCLIP2Model", "FGDenseError", "Grounder", "Grounding", "ImageLoadError",
    "SegmentationResult", "Segmenter", "dense_features", "dense_features_batch", "encode_text",
    "init_from_siglip2", "load_image", "load_tokenizer", "tokenize",
]
