"""The image-text retrieval sets of FG-CLIP 2's published numbers, each read as its official script reads it.

A protocol says how the annotation file is laid out, which captions of an image count, and how they are
encoded (walk type and so token count: ``short`` 64, ``long`` 196; lower-cased or as written):

========== ======================================================= ========== ======= ========== ===========
protocol   file (official script)                                   captions   walk    lower-case layout
========== ======================================================= ========== ======= ========== ===========
coco       COCO captions JSON (``coco_retrieval.py``)               first 5    short   yes        coco
flickr     JSON list of {image, caption: [...]} (``flickr30k_...``) all        short   yes        flickr
coco-cn    ``COCO_val2014_<id>#zhm#k caption`` lines (``coco_cn``)  first 5    short   yes        coco-cn
flickr-cna ``name#k<TAB>caption`` lines (``flicker_cna.py``)        all        short   no         flickr-cna
dci        folder of JSON {image, extra_caption} (``dci_retrieval``) 1         long    yes        dci
share4v    ShareGPT4V JSON, first 1000 (``share1k_retrieval.py``)   1          long    yes        share4v
lit-cn     ``image<TAB>caption`` lines (``long_trans_cn.py``)       1          long    no         tsv
dci-cn     as lit-cn                                                1          long    no         tsv
docci-cn   as lit-cn                                                1          long    no         tsv
========== ======================================================= ========== ======= ========== ===========
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from ..jsontext import parse_json
from ..paths import missing_file_reason

# In the output folder: every query's rank of its best true answer (0: first); for each text, its image
# and the image it found first. Named here, in the light module, for the tool's checks before torch loads.
RANKS = "ranks.json"


@dataclass(frozen=True)
class RetrievalProtocol:
    name: str
    layout: str
    walk_type: str
    lowercase: bool
    max_captions: int | None  # captions kept per image (None: all)
    script: str

    def describe(self) -> str:
        kept = "all captions" if self.max_captions is None else f"the first {self.max_captions} caption(s)"
        case = "lower-cased" if self.lowercase else "as written"
        return f"{kept} of each image, {case}, {self.walk_type} walk (official {self.script})"


PROTOCOLS = {p.name: p for p in [
    RetrievalProtocol("coco", "coco", "short", True, 5, "coco_retrieval.py"),
    RetrievalProtocol("flickr", "flickr", "short", True, None, "flickr30k_retrieval.py"),
    RetrievalProtocol("coco-cn", "coco-cn", "short", True, 5, "coco_cn.py"),
    RetrievalProtocol("flickr-cna", "flickr-cna", "short", False, None, "flicker_cna.py"),
    RetrievalProtocol("dci", "dci", "long", True, 1, "dci_retrieval.py"),
    RetrievalProtocol("share4v", "share4v", "long", True, 1, "share1k_retrieval.py"),
    RetrievalProtocol("lit-cn", "tsv", "long", False, 1, "long_trans_cn.py"),
    RetrievalProtocol("dci-cn", "tsv", "long", False, 1, "long_trans_cn.py"),
    RetrievalProtocol("docci-cn", "tsv", "long", False, 1, "long_trans_cn.py"),
]}
SHARE4V_IMAGES = 1000  # the ShareGPT4V-1k set: the file's first 1000 entries
_COCO_CN = re.compile(r"COCO_(train|val|test)2014_(\d{12})#zhm#\d\s+(.*)")


@dataclass
class RetrievalSet:
    """Images (names relative to the images folder, or absolute) and each one's captions, in file order."""

    images: list[str]
    captions: list[list[str]]
    source: str


def _json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    return parse_json(text, str(path), DatasetError)  # nested too deeply: one line, not a RecursionError


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None


def _grouped(pairs) -> tuple[list[str], list[list[str]]]:
    found: dict[str, list[str]] = {}
    for image, caption in pairs:
        found.setdefault(image, []).append(caption)
    return list(found), list(found.values())


def _coco(path: Path):
    data = _json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path} is not a COCO captions file (needs 'images' and 'annotations' lists)")
    try:
        names = {im["id"]: im["file_name"] for im in data["images"]}
        captions: dict = {image_id: [] for image_id in names}
        for ann in data["annotations"]:
            captions[ann["image_id"]].append(str(ann["caption"]))
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{path}: an image or annotation lacks {err} (COCO captions need id, file_name, "
                           "image_id, caption)") from None
    ids = sorted(names)  # torchvision's CocoCaptions, which the official script reads with, sorts the ids
    return [names[i] for i in ids], [captions[i] for i in ids]


def _flickr(path: Path):
    data = _json(path)
    try:
        return [str(e["image"]) for e in data], [[str(c) for c in e["caption"]] for e in data]
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{path}: every entry needs 'image' and a 'caption' list ({err})") from None


def _coco_cn(path: Path):
    pairs = []
    for line in _lines(path):
        match = _COCO_CN.match(line.strip())
        if match:  # as the official script, lines of another shape are passed over
            split, number, text = match.groups()
            pairs.append((f"{split}2014/COCO_{split}2014_{number}.jpg", text))
    return _grouped(pairs)


def _tab_separated(path: Path, image_of) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        parts = line.rstrip().split("\t")
        if len(parts) != 2:
            raise DatasetError(f"{path} line {number}: expected IMAGE<TAB>CAPTION, got {len(parts)} field(s)")
        pairs.append((image_of(parts[0]), parts[1].strip()))
    return pairs


def _dci(path: Path):
    if not path.is_dir():
        raise DatasetError(f"the dci protocol reads a folder of JSON annotations; {path} is not a folder")
    pairs = []
    for file in sorted(p for p in path.iterdir() if p.suffix == ".json"):
        entry = _json(file)
        try:
            pairs.append((str(entry["image"]), str(entry["extra_caption"])))
        except (KeyError, TypeError):
            raise DatasetError(f"{file} needs 'image' and 'extra_caption'") from None
    return [p[0] for p in pairs], [[p[1]] for p in pairs]


def _share4v(path: Path):
    data = _json(path)
    try:
        entries = data[:SHARE4V_IMAGES]
        return ([str(e["image"]).split("/")[-1] for e in entries],
                [[str(e["conversations"][1]["value"])] for e in entries])
    except (KeyError, TypeError, IndexError) as err:
        raise DatasetError(f"{path}: every entry needs 'image' and two 'conversations' ({err})") from None


def load_retrieval_set(path, protocol: RetrievalProtocol) -> RetrievalSet:
    """The images and captions of ``path`` as ``protocol``'s official script selects them."""
    path = Path(path)
    layout = protocol.layout
    if layout == "dci":  # a folder of JSON files: _dci says so when it is not one
        reason = None if path.exists() else "does not exist"
    else:
        reason = missing_file_reason(path)
    if reason:
        raise DatasetError(f"annotation file {path} {reason}")
    if layout == "flickr-cna":
        images, captions = _grouped(_tab_separated(path, lambda name: name.split("#")[0] + ".jpg"))
    elif layout == "tsv":  # one image per line, as the official script (a repeated image is two)
        pairs = _tab_separated(path, lambda name: name)
        images, captions = [p[0] for p in pairs], [[p[1]] for p in pairs]
    else:
        images, captions = {"coco": _coco, "flickr": _flickr, "coco-cn": _coco_cn, "dci": _dci,
                            "share4v": _share4v}[layout](path)
    if protocol.max_captions is not None:
        captions = [c[: protocol.max_captions] for c in captions]
    kept = [(i, c) for i, c in zip(images, captions) if c]
    if not kept:
        raise DatasetError(f"{path} holds no image with a caption under the {protocol.name} protocol")
    return RetrievalSet([i for i, _ in kept], [c for _, c in kept], str(path))


def protocol_named(name: str) -> RetrievalProtocol:
    if name not in PROTOCOLS:
        raise DatasetError(f"unknown retrieval protocol {name!r}; use one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


__all__ = ["PROTOCOLS", "RANKS", "RetrievalProtocol", "RetrievalSet", "load_retrieval_set", "protocol_named"]
