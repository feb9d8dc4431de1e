"""Rebuild the CJK label font shipped in fgdense/assets/fonts from its upstream source.

    python scripts/make_cjk_font.py [--ttc PATH] [--out PATH]

The source is Noto Sans CJK SC Regular (version 2.004, SIL OFL 1.1), face "NotoSansCJKsc-Regular" of
NotoSansCJK-Regular.ttc in Debian's package fonts-noto-cjk, version 1:20220127+repack1-1 (bookworm).
Where to find it, first match wins:

1. --ttc PATH, a copy of that collection file;
2. the installed package's file, /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc;
3. ``apt-get download fonts-noto-cjk=VERSION`` into a temporary folder (Debian/Ubuntu with that
   version in its package lists), the file taken out of the .deb with dpkg-deb.

Whichever is used must have the SHA-256 below, so every run starts from the same bytes. The subset
keeps the characters listed in ``wanted_codepoints`` (every GB2312 character among them, taken by
decoding every two-byte GB2312 code), the glyphs' outlines without hints, only the layout features that
HarfBuzz applies to horizontal text by default (default language systems only), no vertical metrics,
and the whole name table (copyright, licence and trademark notices included). It adds U+FFFD, which
the source lacks (see ``add_replacement_character``). The font's own timestamp is kept, so the output
depends only on the input and the fontTools version.

Prints the output path, its size, its glyph count and how many characters it maps.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from fontTools import subset
from fontTools.pens.boundsPen import BoundsPen
from fontTools.pens.reverseContourPen import ReverseContourPen
from fontTools.pens.t2CharStringPen import T2CharStringPen
from fontTools.pens.transformPen import TransformPen
from fontTools.ttLib import TTCollection, TTFont

DEB_PACKAGE = "fonts-noto-cjk"
DEB_VERSION = "1:20220127+repack1-1"
TTC_IN_DEB = "./usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
COPYRIGHT_IN_DEB = "./usr/share/doc/fonts-noto-cjk/copyright"
TTC_SHA256 = "b76b0433203017ca80401b2ee0dd69350349871c4b19d504c34dbdd80541690a"
FACE = "NotoSansCJKsc-Regular"  # PostScript name of the Simplified Chinese face in the collection

REPO = Path(__file__).resolve().parent.parent
FONT_DIR = REPO / "fgdense" / "assets" / "fonts"
DEFAULT_OUT = FONT_DIR / "NotoSansCJKsc-Regular-subset.otf"
LICENCE = FONT_DIR / "OFL.txt"

# What undecodable text turns into; the source lacks it, add_replacement_character draws it.
REPLACEMENT = 0xFFFD
# Typographic punctuation that labels commonly carry: … – — ‘ ’ “ ” • · ‰ € ™ and friends.
TYPOGRAPHIC = "\u2026\u2013\u2014\u2018\u2019\u201c\u201d\u2022\u00b7\u2030\u20ac\u2122\u2032\u2033"


def gb2312_characters() -> set[str]:
    """Every character of GB2312: each valid two-byte code (rows 0xA1-0xF7, cells 0xA1-0xFE), decoded.

    A few GB2312 codes are mapped to different Unicode characters by different tables (0xA1A4 is U+30FB
    for the gb2312 codec, U+00B7 for gb18030; 0xA1AA is U+2015 or U+2014); both readings are kept, so
    text produced by either kind of decoder draws.
    """
    chars = set()
    for row in range(0xA1, 0xF8):
        for cell in range(0xA1, 0xFF):
            code = bytes((row, cell))
            try:
                chars.add(code.decode("gb2312"))
            except UnicodeDecodeError:
                continue
            chars.add(code.decode("gb18030"))
    return chars


def required_codepoints() -> set[int]:
    """Characters the font must have; the build fails if the source lacks any of them."""
    cps = {ord(c) for c in gb2312_characters()}
    cps |= set(range(0x20, 0x7F))  # printable ASCII
    cps |= set(range(0xA0, 0x100))  # Latin-1 Supplement
    cps |= {ord(c) for c in TYPOGRAPHIC}
    cps.add(REPLACEMENT)
    return cps


def wanted_codepoints() -> set[int]:
    """The required characters plus whole blocks that cost little; whatever the source has of these."""
    cps = required_codepoints()
    cps |= set(range(0x100, 0x180))  # Latin Extended-A (European names in labels)
    cps |= set(range(0x2000, 0x2070))  # General Punctuation
    cps |= set(range(0x20A0, 0x20C1))  # Currency Symbols
    cps |= set(range(0x2100, 0x2150))  # Letterlike Symbols (℃ № ™)
    cps |= set(range(0x3000, 0x3040))  # CJK Symbols and Punctuation (full-width punctuation)
    cps |= set(range(0xFF00, 0xFFF0))  # Halfwidth and Fullwidth Forms
    return cps


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_from_deb(deb: Path, members: list[str], dest: Path) -> dict[str, Path]:
    """Take ``members`` out of the .deb's data archive into ``dest``; returns member -> written path."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    found = {}
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for info in tar:
            if info.name in members and info.isfile():
                target = dest / Path(info.name).name
                with tar.extractfile(info) as src, open(target, "wb") as out:
                    out.write(src.read())
                found[info.name] = target
    if proc.wait() != 0:
        raise SystemExit(f"dpkg-deb could not read {deb}")
    missing = set(members) - set(found)
    if missing:
        raise SystemExit(f"{deb} has no {', '.join(sorted(missing))}")
    return found


def download_deb(workdir: Path) -> Path:
    spec = f"{DEB_PACKAGE}={DEB_VERSION}"
    print(f"downloading {spec} with apt-get ...", file=sys.stderr)
    result = subprocess.run(["apt-get", "download", spec], cwd=workdir)
    debs = sorted(workdir.glob(f"{DEB_PACKAGE}_*.deb"))
    if result.returncode != 0 or not debs:
        raise SystemExit(
            f"apt-get download {spec} failed; on a system without that package version, get "
            f"{TTC_IN_DEB.lstrip('.')} from it some other way and pass it with --ttc"
        )
    return debs[0]


def source_files(ttc: str | None, workdir: Path) -> tuple[Path, str | None]:
    """The collection file to subset and, where available, the text of the package's copyright file."""
    if ttc:
        return Path(ttc), None
    installed = Path(TTC_IN_DEB.lstrip("."))
    installed_copyright = Path(COPYRIGHT_IN_DEB.lstrip("."))
    if installed.is_file() and sha256(installed) == TTC_SHA256:
        text = installed_copyright.read_text(encoding="utf-8") if installed_copyright.is_file() else None
        return installed, text
    deb = download_deb(workdir)
    files = files_from_deb(deb, [TTC_IN_DEB, COPYRIGHT_IN_DEB], workdir)
    return files[TTC_IN_DEB], files[COPYRIGHT_IN_DEB].read_text(encoding="utf-8")


def check_licence(copyright_text: str) -> None:
    """The shipped OFL.txt must carry, word for word, the licence the Debian package states for the font."""
    block = re.search(r"^License: SIL-1\.1\n((?: .*\n)+)", copyright_text, re.M)
    if not block:
        raise SystemExit("the package's copyright file has no SIL-1.1 licence text")
    lines = [line[1:] for line in block.group(1).splitlines()]
    stated = " ".join(" ".join("" if line == "." else line for line in lines).split())
    shipped = LICENCE.read_text(encoding="utf-8")
    shipped = " ".join(shipped[shipped.index("-----"):].split())
    if stated != shipped:
        raise SystemExit(f"{LICENCE} does not match the licence text in the package's copyright file")
    print(f"licence check: {LICENCE.name} matches the package's SIL OFL 1.1 text", file=sys.stderr)


def face_number(ttc: Path) -> int:
    for number, font in enumerate(TTCollection(str(ttc), lazy=True).fonts):
        if font["name"].getDebugName(6) == FACE:
            return number
    raise SystemExit(f"{ttc} has no face named {FACE}")


def subset_options(number: int) -> subset.Options:
    options = subset.Options()
    options.font_number = number
    # PIL's basic layout uses no layout table. With raqm, HarfBuzz applies the features that it turns on by
    # default for horizontal text; keeping those (of the default language systems only, see
    # only_default_language_systems) makes the subset shape as the full font does: 'locl' swaps in
    # proportional punctuation in Latin runs ("0.87 …" ends with a baseline ellipsis), 'ccmp' joins "——",
    # 'kern' spaces Latin. Optional ones (vertical forms, full/half/proportional widths, ruby) go.
    options.layout_features = ["ccmp", "locl", "rlig", "liga", "clig", "calt", "rclt", "kern", "mark",
                               "mkmk"]
    options.hinting = False  # drops the CFF stem hints: about 15% of the size, FreeType renders fine
    options.drop_tables += ["BASE", "VORG", "vhea", "vmtx"]  # baselines, vertical metrics: no vertical text
    options.name_IDs = ["*"]  # keep the copyright, trademark, licence and designer records
    options.name_languages = ["*"]
    options.name_legacy = True
    options.notdef_outline = True  # a character outside the subset draws as a visible box, not nothing
    options.recalc_timestamp = False  # keep head.modified from the source: same input, same bytes
    return options


def only_default_language_systems(font) -> None:
    """Drop the layout tables' per-language systems (JAN, KOR, ZHH, ZHS, ZHT), keeping each script's default.

    Their 'locl' lookups swap in the other regions' forms of thousands of hanzi, which the subset would
    otherwise have to keep (about 5,800 more glyphs); the SC face's own forms are its defaults.
    """
    for tag in ("GSUB", "GPOS"):
        if tag in font:
            scripts = font[tag].table.ScriptList
            scripts.ensureDecompiled(recurse=True)  # else a lazily loaded script reads its records back later
            for record in scripts.ScriptRecord:
                record.Script.LangSysRecord = []
                record.Script.LangSysCount = 0


def add_replacement_character(font) -> str:
    """Give the font U+FFFD REPLACEMENT CHARACTER, which Noto Sans CJK lacks, drawn from its own glyphs.

    The new glyph is the font's full-width black diamond (U+25C6) with its full-width question mark
    (U+FF1F), scaled to fit, cut out of the middle (contours reversed, so the non-zero fill leaves a
    hole): the usual look of U+FFFD, in the font's own strokes. It is appended as the last glyph, under
    a CID one past the font's CIDCount, in the font dictionary of the diamond. Returns its name.
    """
    cmap = font.getBestCmap()
    glyphs = font.getGlyphSet()
    diamond, question = cmap[0x25C6], cmap[0xFF1F]

    def bounds(name):
        pen = BoundsPen(glyphs)
        glyphs[name].draw(pen)
        return pen.bounds

    dx0, dy0, dx1, dy1 = bounds(diamond)
    qx0, qy0, qx1, qy1 = bounds(question)
    scale = 0.5 * (dy1 - dy0) / (qy1 - qy0)  # the mark half as tall as the diamond
    shift_x = (dx0 + dx1) / 2 - scale * (qx0 + qx1) / 2
    shift_y = (dy0 + dy1) / 2 - scale * (qy0 + qy1) / 2

    cff = font["CFF "].cff
    top = cff.topDictIndex[0]
    charstrings = top.CharStrings
    fd_index = charstrings.getItemAndSelector(diamond)[1]
    width, lsb = font["hmtx"][diamond]
    pen = T2CharStringPen(width, glyphs)
    glyphs[diamond].draw(pen)
    glyphs[question].draw(TransformPen(ReverseContourPen(pen), (scale, 0, 0, scale, shift_x, shift_y)))
    assert charstrings.charStringsIndex.fdSelect is top.FDSelect
    charstring = pen.getCharString(private=top.FDArray[fd_index].Private, globalSubrs=cff.GlobalSubrs)

    cid = top.CIDCount
    name = f"cid{cid:05d}"
    top.CIDCount = cid + 1
    charstrings.charStringsIndex.append(charstring)
    charstrings.charStrings[name] = len(charstrings.charStringsIndex) - 1
    top.FDSelect.append(fd_index)  # the same list as charstrings.charStringsIndex.fdSelect
    top.charset.append(name)
    font.setGlyphOrder(font.getGlyphOrder() + [name])
    font["hmtx"][name] = (width, lsb)
    for table in font["cmap"].tables:
        if table.isUnicode() and table.format in (4, 12):
            table.cmap[0xFFFD] = name
    os2 = font["OS/2"]
    os2.setUnicodeRanges(os2.getUnicodeRanges() | {69})  # bit 69: Specials (U+FFF0-U+FFFF)
    return name


def build(ttc: Path, out: Path) -> None:
    number = face_number(ttc)
    options = subset_options(number)
    font = subset.load_font(str(ttc), options)
    cmap = font.getBestCmap()
    missing = sorted(required_codepoints() - set(cmap) - {REPLACEMENT})
    if missing:
        raise SystemExit("the source font lacks " + " ".join(f"U+{cp:04X}" for cp in missing))
    only_default_language_systems(font)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(wanted_codepoints() & set(cmap)))
    subsetter.subset(font)
    add_replacement_character(font)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    subset.save_font(font, str(tmp), options)
    os.replace(tmp, out)
    font.close()
    check(out)


def check(path: Path) -> None:
    """Read the written font back: it must map every required character; print what it is."""
    with TTFont(str(path)) as font:
        cmap = font.getBestCmap()
        missing = sorted(required_codepoints() - set(cmap))
        if missing:
            raise SystemExit(f"{path} lacks " + " ".join(f"U+{cp:04X}" for cp in missing))
        glyphs = font["maxp"].numGlyphs
    size = path.stat().st_size
    print(f"{path}  {size} bytes ({size / 2**20:.2f} MiB)  {glyphs} glyphs  {len(cmap)} characters  "
          f"sha256 {sha256(path)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttc", help="NotoSansCJK-Regular.ttc from the package (no lookup, no download)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output font (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="make_cjk_font.") as tmp:
        ttc, copyright_text = source_files(args.ttc, Path(tmp))
        digest = sha256(ttc)
        if digest != TTC_SHA256:
            raise SystemExit(f"{ttc} has SHA-256 {digest}, not that of {DEB_PACKAGE} {DEB_VERSION}'s file")
        if copyright_text is not None:
            check_licence(copyright_text)
        build(ttc, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
