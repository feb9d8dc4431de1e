"""Exceptions a user can cause, each with a message that names the bad input.

Every one is an :class:`FGDenseError` (and a ``ValueError``, as most are bad values), so a tool can
catch the one base class and print its message as a single line.
"""


class FGDenseError(ValueError):
    """Base class of fgdense's user-facing errors."""


class CheckpointError(FGDenseError):
    """A checkpoint folder, hub id, config or weight file that cannot be used."""


class ImageLoadError(FGDenseError):
    """An image path that does not exist or is not a readable image."""


class BoxError(FGDenseError):
    """A box that cannot be projected onto its image (NaN, inverted, zero area, outside)."""


class LabelError(FGDenseError):
    """A label, phrase or prompt list that cannot be encoded (empty, duplicate, control characters)."""


class DeviceError(FGDenseError):
    """A device or precision that this machine cannot run (e.g. ``cuda`` without CUDA)."""


class FontError(FGDenseError):
    """A font file that does not exist or cannot be read."""


class DatasetError(FGDenseError):
    """An annotation file, dataset folder or predictions file that cannot be used as described."""


# COCO-format files are read by one reader (fgdense.io.coco) for evaluation and training alike, with one
# error type; stage-2 training has long called it by this name.
CocoFormatError = DatasetError


class FineHARDError(DatasetError):
    """A FineHARD annotation that cannot be trained on; the message names the file and record."""


class OutputError(FGDenseError):
    """An output path that cannot or must not be written (a folder that is missing, one of the inputs)."""


class OutputNameError(OutputError):
    """An output file name the filesystem will not hold (too long, bytes it refuses): that file, not its folder."""


# Characters a terminal acts on instead of showing: C0/C1 controls (ESC starts escape sequences, BEL rings)
# and the bidirectional overrides that reorder what follows them.
_UNSHOWN = {*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def printable(text, keep: str = "") -> str:
    """``text`` with every character a terminal would act on written as its escape (ESC as ``\\x1b``), so a
    name from a user's file prints as what it is; characters in ``keep`` (a table's newlines) stay."""
    text = str(text)
    if not any(ord(ch) in _UNSHOWN for ch in text):
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii") if ord(ch) in _UNSHOWN and ch not in keep else ch
                   for ch in text)


def shorten(items, limit: int = 5, sep: str = ", ") -> str:
    """``a, b, c, ... (12 more)``: a long list cut for a one-line message."""
    items = [str(item) for item in items]
    if len(items) <= limit:
        return sep.join(items)
    return sep.join(items[:limit]) + f"{sep}... ({len(items) - limit} more)"
