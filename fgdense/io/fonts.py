"""The font the pictures' text is drawn with, Chinese included, on any machine.

fgdense ships a subset of Noto Sans CJK SC (every GB2312 character, Latin, digits and punctuation; see
``fgdense/assets/fonts/README.md``), so pictures look the same everywhere and need no system font.
Choice, made once per run before any model work (:func:`choose_font`):

1. ``--font PATH`` if given;
2. else the bundled font, when it has a glyph for every character to draw;
3. else the installed font with the most of them (a full CJK font covers rare characters).

Pictures are a view, not the product: a character no font can draw never stops a run. It is drawn as
U+FFFD (a visible stand-in) and one warning names the characters and how to get a fuller font.
"""

from __future__ import annotations

import functools
import glob
import os
import subprocess
import warnings
from dataclasses import dataclass
from importlib import resources

from PIL import ImageFont

from ..errors import FontError

REPLACEMENT = "\ufffd"
INSTALL_HINT = ("pass --font with a fuller CJK font (e.g. Noto Sans CJK: Debian/Ubuntu "
                "apt-get install fonts-noto-cjk)")
# Where full CJK fonts usually live (Debian/Ubuntu packages, macOS, Windows), looked at before the rest.
CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
# Text every picture draws besides the labels: numbers, percentages, ranges.
COMMON_TEXT = "0123456789.%-[], background"


def bundled_font() -> str:
    """Path of the font that ships with fgdense."""
    return str(resources.files("fgdense").joinpath("assets/fonts/NotoSansCJKsc-Regular-subset.otf"))


@functools.lru_cache(maxsize=64)
def _cmap(path: str) -> frozenset[int] | None:
    """The code points a font file has glyphs for (None: not a readable font)."""
    from fontTools.ttLib import TTCollection, TTFont

    try:
        collection = path.lower().endswith((".ttc", ".otc"))
        with (TTCollection(path) if collection else TTFont(path, lazy=True)) as opened:
            font = opened.fonts[0] if collection else opened
            return frozenset((font.getBestCmap() or {}).keys())
    except Exception:  # any parse failure means: not a font we can use
        return None


def missing_characters(path: str, text: str) -> str:
    """The distinct characters of ``text`` (spaces aside) the font at ``path`` has no glyph for, in order."""
    cmap = _cmap(path) or frozenset()
    return "".join(dict.fromkeys(ch for ch in text if not ch.isspace() and ord(ch) not in cmap))


def _system_fonts() -> list[str]:
    try:
        out = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True, timeout=10).stdout
        found = [line.split(":")[0].strip() for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        found = glob.glob("/usr/share/fonts/**/*.[ot]t[fc]", recursive=True)
    return [p for p in dict.fromkeys(list(CANDIDATES) + found) if os.path.isfile(p)]


@dataclass(frozen=True)
class Lettering:
    """A chosen font and the characters of the run's text it cannot draw."""

    path: str
    missing: str = ""

    def drawable(self, text: str) -> str:
        """``text`` with every character the font lacks replaced by U+FFFD."""
        if not self.missing:
            return text
        return "".join(REPLACEMENT if ch in self.missing else ch for ch in text)

    def font(self, size: int) -> ImageFont.FreeTypeFont:
        return _load(self.path, max(1, int(size)))


@functools.lru_cache(maxsize=128)
def _load(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size=size)


def choose_font(texts, font: str | None = None, warn: bool = True) -> Lettering:
    """The font to draw ``texts`` (labels, phrases) with, chosen as the module docstring says.

    A ``font`` that does not exist or is not a font is a :class:`FontError`; missing glyphs are not an
    error: with ``warn``, one warning names them.
    """
    text = "".join(texts if not isinstance(texts, str) else [texts]) + COMMON_TEXT
    if font:
        if os.path.isdir(font):  # "does not exist" would be wrong: it does, as a folder
            raise FontError(f"font {font} is a folder; name a font file (.ttf, .otf, .ttc)")
        if not os.path.isfile(font):
            raise FontError(f"font {font} does not exist")
        if _cmap(font) is None:
            raise FontError(f"font {font} is not a TrueType/OpenType font file")
        choice = Lettering(font, missing_characters(font, text))
    else:
        choice = Lettering(bundled_font(), missing_characters(bundled_font(), text))
        if choice.missing:
            for path in _system_fonts():
                missing = missing_characters(path, text)
                if len(missing) < len(choice.missing) and _cmap(path) is not None:
                    choice = Lettering(path, missing)
                    if not missing:
                        break
    if choice.missing and warn:
        warnings.warn(f"no font here draws {choice.missing!r}; pictures show {REPLACEMENT} in their place (the JSON "
                      f"outputs keep the text whole); {INSTALL_HINT}", stacklevel=2)
    return choice


def lettering_for(font, texts) -> Lettering:
    """``font`` as a :class:`Lettering`: one already chosen, or chosen now for ``texts`` (a path or None),
    without a warning (the tools warn once, when they choose before any work)."""
    return font if isinstance(font, Lettering) else choose_font(texts, font, warn=False)


__all__ = ["lettering_for", "CANDIDATES", "Lettering", "REPLACEMENT", "bundled_font", "choose_font", "missing_characters"]
