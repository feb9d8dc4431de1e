"""The FG-CLIP 2 network on transformers' SigLIP 2 parts: modeling, weights, boxes, dense head."""

from .modeling import FGCLIP2Model, FGCLIP2Output, grid_of

__all__ = ["FGCLIP2Model", "FGCLIP2Output", "grid_of"]
