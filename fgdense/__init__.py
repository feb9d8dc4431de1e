"""fgdense: open-vocabulary dense prediction on FG-CLIP 2.

The public names below are imported on first use, so that ``import fgdense`` (and every tool's
``--help``) stays quick: torch and transformers load only when a model is really needed.
"""

from .lazy import lazy_exports
from .versions import VERSION as __version__
from .versions import warn_if_untested

# One warning line when transformers or tokenizers is outside the range the suite passed on.
warn_if_untested()

# public name -> module that defines it
_PUBLIC = {
    "FGCLIP2Model": ".model",
    "FGCLIP2Config": ".config",
    "FGCLIP2ImageProcessor": ".processing",
    "FGCLIP2Processor": ".processing",
    "load_image": ".processing",
    "load_tokenizer": ".processing",
    "tokenize": ".processing",
    "encode_text": ".prompts",
    "init_from_siglip2": ".model.siglip2_init",
    "DenseFeatures": ".dense",
    "dense_features": ".dense",
    "dense_features_batch": ".dense",
    "Segmenter": ".segment",
    "SegmentationResult": ".segment",
    "BoxClassifier": ".classify",
    "BoxClassification": ".classify",
    "MaskClassifier": ".classify_masks",
    "MaskClassification": ".classify_masks",
    "Grounder": ".ground",
    "Grounding": ".ground",
    "Embedder": ".embed",
    "Embeddings": ".embed",
    "FGDenseError": ".errors",
    "CheckpointError": ".errors",
    "ImageLoadError": ".errors",
    "BoxError": ".errors",
    "LabelError": ".errors",
    "DeviceError": ".errors",
    "DatasetError": ".errors",
    "OutputError": ".errors",
    "FontError": ".errors",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
