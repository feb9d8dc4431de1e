"""Search over a collection: an index of image (and region) embeddings built on the bulk runner, answered
from memory-mapped arrays by text queries in English or Chinese (see ``docs/search.md``)."""

from .index import IndexJob, compile_index, grid_boxes
from .query import SearchIndex, search, top_k
from .sheet import contact_sheet

__all__ = ["IndexJob", "SearchIndex", "compile_index", "contact_sheet", "grid_boxes", "search", "top_k"]
