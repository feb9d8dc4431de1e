"""Finding a font that can draw the labels (Chinese included) on output pictures.

Labels must never come out as "???" boxes: a font is chosen only if it has a glyph for every
character to draw, and if none does, the caller gets a clear error saying how to fix it.
"""

from __future__ import annotations

import functools
import glob
import os
import subprocess

from PIL import ImageFont

# Common locations of CJK-capable fonts (Debian/Ubuntu packages, macOS, Windows).
CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Light.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
INSTALL_HINT = "install a CJK font (Debian/Ubuntu: apt-get install fonts-wqy-microhei) or pass --font PATH"


class FontError(ValueError):
    """No usable font for the labels to draw."""


def _system_fonts() -> list[str]:
    try:
        out = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True, timeout=10).stdout
        return [line.split(":")[0].strip() for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return glob.glob("/usr/share/fonts/**/*.tt[fc]", recursive=True)


def covers(path: str, text: str) -> bool:
    """Whether the font at ``path`` has a real glyph for every non-space character of ``text``."""
    try:
        from fontTools.ttLib import TTCollection, TTFont
    except ImportError:  # without fontTools, trust the curated candidates only
        return True
    try:
        fonts = TTCollection(path).fonts if path.lower().endswith(".ttc") else [TTFont(path, lazy=True)]
        cmap = fonts[0].getBestCmap() or {}
    except Exception:
        return False
    return all(ord(ch) in cmap for ch in text if not ch.isspace())


@functools.lru_cache(maxsize=32)
def find_font(text: str = "", font: str | None = None) -> str:
    """The path of a font that can draw ``text``: ``font`` if given (checked), else the first that can."""
    if font:
        if not os.path.isfile(font):
            raise FontError(f"font {font} does not exist")
        if not covers(font, text):
            raise FontError(f"font {font} has no glyphs for some characters of {text!r}; {INSTALL_HINT}")
        return font
    seen = set()
    for path in list(CANDIDATES) + _system_fonts():
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        if covers(path, text):
            return path
    raise FontError(f"no installed font can draw {text!r}; {INSTALL_HINT}")


def load_font(text: str = "", size: int = 16, font: str | None = None) -> ImageFont.FreeTypeFont:
    """A PIL font of ``size`` pixels that can draw ``text``."""
    return ImageFont.truetype(find_font(text, font), size=size)
