"""Exceptions a user can cause, each with a message that names the bad input."""


class FGDenseError(Exception):
    """Base class of fgdense's user-facing errors."""


class CheckpointError(FGDenseError, ValueError):
    """A checkpoint folder, hub id or weight file that cannot be used."""


class ImageLoadError(FGDenseError, ValueError):
    """An image path that does not exist or is not a readable image."""


class BoxError(FGDenseError, ValueError):
    """A box that cannot be projected onto its image (NaN, inverted, zero area, outside)."""
