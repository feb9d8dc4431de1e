from .config import FGCLIP2Config
from .modeling import FGCLIP2Model, FGCLIP2Output, WALK_TYPES

__all__ = ["FGCLIP2Config", "FGCLIP2Model", "FGCLIP2Output", "WALK_TYPES"]
