"""Image sources at any scale: image files, folders and manifests, read lazily, each image named once.

A source is one command-line argument:

* an image file;
* a folder: the image files directly inside it (by suffix, :data:`IMAGE_SUFFIXES`), in name order;
* a manifest: ``NAME.txt`` (one image path a line; blank lines and lines starting with ``#`` are
  skipped) or ``NAME.jsonl`` (one JSON object a line: ``{"path": ..., "boxes": [[x1, y1, x2, y2], ...]}``,
  ``boxes`` optional). Relative paths in a manifest are relative to the manifest's own folder.

Nothing is listed whole: manifests are read line by line and folders entry by entry (one folder's names
are held while they are sorted, so that every process of a sharded run sees the same order). A line of a
manifest that cannot be used is not an error: it comes out as an :class:`Item` with a ``problem``, to be
counted and listed while the run goes on.

Every image gets an output name, its file stem made unique in the run (``x``, ``x-2``...) in source order,
and an index, its position in the run; the same file reached twice is kept once. Names and indices depend
only on the sources, so every process of a sharded run computes the same ones without talking to the
others, and a rerun finds the outputs of the last one. Keeping names unique costs one table of 8-byte
hashes in the process that reads the sources, about 100 bytes per image.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import FGDenseError, ImageLoadError, OutputError
from ..jsontext import parse_json
from .files import name_fits
from .inputs import IMAGE_SUFFIXES, MAX_BOXES_PER_IMAGE, box_rows, is_image_name, too_many_boxes

MANIFEST_SUFFIXES = (".txt", ".jsonl")


@dataclass(frozen=True)
class Item:
    """One image of a run (or one manifest line that names none: ``problem`` is then set).

    ``index`` is the position in the run (duplicates removed); ``name`` the unique output stem; ``key``
    the normalised absolute path that identifies the file; ``boxes`` an (N, 4) array from a JSONL
    manifest, or None; ``where`` says where the image was named, for messages; ``problem`` is a
    (reason, detail) pair for a line that could not be used (its ``path`` None, ``key`` empty, when the
    line names no path).
    """

    index: int
    path: Path | None
    name: str
    key: str
    boxes: np.ndarray | None = None
    where: str = ""
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class _Entry:
    path: Path | None
    boxes: np.ndarray | None
    where: str
    problem: tuple[str, str] | None = None


def path_key(path) -> str:
    """The identity of a file for "the same image twice": its normalised absolute path (no file access)."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")


class Sources:
    """The images named by command-line arguments (files, folders, manifests), streamed lazily.

    The constructor checks every argument, cheaply and before any work: a path that does not exist, a
    file that is neither an image nor a manifest, an empty folder, a manifest whose first entry is not
    what a manifest holds. Each iteration of :meth:`items` reads the sources afresh, in the same order.
    """

    def __init__(self, arguments: Iterable[str | os.PathLike]):
        self.arguments = [Path(a) for a in arguments]
        if not self.arguments:
            raise ImageLoadError("give at least one image, folder or manifest")
        self.kinds = [_check_argument(path) for path in self.arguments]
        self.boxes = None

    def give_boxes(self, boxes: np.ndarray) -> None:
        """Boxes (from a boxes file) for the one image these sources name."""
        # A boxes file belongs to one image named on its own; many images take a JSONL manifest.
        if self.kinds != ["image"]:
            raise ImageLoadError("a boxes file gives the boxes of one image: name exactly one image file, or give "
                                 "many images their boxes in a JSONL manifest ({\"path\": ..., \"boxes\": [...]})")
        self.boxes = boxes

    @property
    def explicit_images(self) -> list[Path]:
        """The image files named directly on the command line."""
        return [p for p, kind in zip(self.arguments, self.kinds) if kind == "image"]

    @property
    def manifests(self) -> list[Path]:
        return [p for p, kind in zip(self.arguments, self.kinds) if kind == "manifest"]

    def _entries(self) -> Iterator[_Entry]:
        for number, (path, kind) in enumerate(zip(self.arguments, self.kinds), 1):
            if kind == "image":
                yield _Entry(path, self.boxes, f"argument {number}")
            elif kind == "folder":
                yield from _folder_entries(path)
            else:
                yield from _manifest_entries(path)

    def items(self, output_files: Callable[[str], Iterable[str]] | None = None,
              reserved: Iterable[str] = ()) -> Iterator[Item]:
        """Every image once, with its index and unique output name, in source order (lazily).

        ``output_files(name)`` lists the file names a name's outputs take (default: the name itself);
        a name is skipped when one of those is in ``reserved`` (the run's own files, as a COCO results
        file in the output folder), so an image can never be written over them.
        """
        files = output_files or (lambda name: [name])
        reserved = set(reserved)
        taken: dict[int, int] = {}  # hash of a name -> hash of the key of the image that has it
        boxed: dict[int, str] = {}  # hash of the key of an image given boxes -> where it was named
        index = 0
        for entry in self._entries():
            problem = entry.problem
            key = path_key(entry.path) if entry.path is not None else ""
            stem = None if problem is not None else _output_name(entry, key, files, reserved, taken)
            if stem == "":  # this very file, named again
                if entry.boxes is None and _hash64(key) not in boxed:
                    continue  # nothing lost: it is done once
                # Boxes on either line: doing one line would drop the other's boxes without a word.
                first = boxed.get(_hash64(key), "an earlier entry")
                problem = ("repeated_path", f"{entry.path} is named again (first by {first}); give all of an "
                                            "image's boxes on one line")
            elif stem is not None and not all(name_fits(name) for name in files(stem)):
                problem = ("name_too_long", f"the output name {stem!r} is too long for a file name")
            if problem is not None:
                yield Item(index, entry.path, "", key, entry.boxes, entry.where, problem)
            else:
                if entry.boxes is not None:
                    boxed[_hash64(key)] = entry.where
                yield Item(index, entry.path, stem, key, entry.boxes, entry.where)
            index += 1

    def check_outputs_spare_inputs(self, out_dir, output_files: Callable[[str], Iterable[str]],
                                   reserved: Iterable[str] = (), also: dict[str, object] | None = None) -> int:
        """Refuse a run whose outputs would write over one of its own inputs; return the number of items.

        Only inputs that lie in the output folder itself can be hit (outputs go nowhere else): images,
        and the other input files named in ``also`` (``{"boxes file": path}``). A first pass counts the
        items and notes the images there; only if there are any such inputs, a second pass checks every
        image's outputs against them. An output folder that is one of the input folders is refused too:
        a rerun would take the last run's pictures for new images.
        """
        out = os.path.realpath(out_dir)
        for path, kind in zip(self.arguments, self.kinds):
            if kind == "folder" and os.path.realpath(path) == out:
                raise OutputError(f"--out {out_dir} is the input folder {path}: a rerun would read this run's "
                                  "pictures as images; choose another output folder")

        @functools.lru_cache(maxsize=4096)
        def in_out(folder: str) -> bool:
            return os.path.realpath(folder or ".") == out

        inside: dict[str, str] = {}
        for what, path in (also or {}).items():
            if path is not None and in_out(os.path.dirname(os.fspath(path))):
                inside[Path(path).name] = f"{what} {path}"
        count = 0
        for item in self.items(output_files, reserved):
            count += 1
            if item.problem is None:
                # Where the file really is: a link elsewhere to a file in the output folder is that file.
                real = os.path.realpath(item.path)
                if in_out(os.path.dirname(real)):
                    inside[os.path.basename(real)] = f"input image {item.path}"
        if inside:
            for item in self.items(output_files, reserved):
                for name in output_files(item.name) if item.problem is None else ():
                    if name in inside:
                        raise OutputError(f"output {Path(out_dir) / name} of {item.path} is the {inside[name]}; "
                                          "fgdense never writes over its inputs: choose another output folder")
        return count


def _output_name(entry: _Entry, key: str, files, reserved: set, taken: dict) -> str:
    """The entry's output name, unique in the run and clear of ``reserved`` names (noted in ``taken``), or ""
    when the same file already has one."""
    mine = _hash64(key)
    stem, count = entry.path.stem, 1
    while True:
        held = taken.get(_hash64(stem))
        if held == mine:
            return ""
        if held is None and not reserved.intersection(files(stem)):
            taken[_hash64(stem)] = mine
            return stem
        count += 1
        stem = f"{entry.path.stem}-{count}"


def shard(items: Iterable[Item], rank: int, world: int) -> Iterator[Item]:
    """The items of process ``rank`` of ``world``: every ``world``-th by index, so shares are disjoint."""
    return (item for item in items if item.index % world == rank)


# ------------------------------------------------------------------------------------------ arguments
def check_image_argument(path) -> Path:
    """One image file named as an argument, checked without decoding it: a path that does not exist, a
    broken link, a folder or a pipe is an :class:`ImageLoadError` naming it."""
    path = Path(path)
    if path.is_dir():
        raise ImageLoadError(f"image {path} is a folder, not an image file")
    if _check_argument(path) != "image":
        raise ImageLoadError(f"{path} is not an image file")
    return path


def _check_argument(path: Path) -> str:
    """"image", "folder" or "manifest", or :class:`ImageLoadError` naming what is wrong."""
    if not path.exists():
        if path.is_symlink():
            raise ImageLoadError(f"image {path} is a broken (or looping) symbolic link")
        raise ImageLoadError(f"image {path} does not exist")
    if not path.is_dir() and not path.is_file():  # reading a FIFO (or a device) would wait forever
        raise ImageLoadError(f"{path} is not a regular file (a pipe, device or socket); give image files, "
                             "folders or manifests")
    if path.is_dir():
        if not any(True for _ in _folder_images(path)):
            raise ImageLoadError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return "folder"
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        _check_manifest(path)
        return "manifest"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            pass
    except Image.DecompressionBombError as err:  # PIL's guard against a small file that decodes huge
        raise ImageLoadError(f"image {path} is too large to decode safely: {err}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ImageLoadError(f"{path} is not an image file ({err.__class__.__name__}), nor a manifest "
                             f"({', '.join(MANIFEST_SUFFIXES)})") from None
    return "image"


def _check_manifest(path: Path) -> None:
    """A manifest's first entry must be what a manifest holds: a common mistake (a notes file) fails at once."""
    first = next(iter(_manifest_entries(path)), None)
    if first is None:
        raise ImageLoadError(f"manifest {path} names no images")
    if first.problem is not None:
        raise ImageLoadError(f"{path} is not an image file, nor a manifest of images: {first.problem[1]}")
    if path.suffix.lower() == ".txt" and not (is_image_name(first.path) or first.path.is_file()):
        raise ImageLoadError(f"{path} is not an image file, nor a manifest of images: its first line "
                             f"({str(first.path)[:80]!r}) names no image file")


def _folder_images(folder: Path) -> Iterator[os.DirEntry]:
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_image_name(Path(entry.name)):
                yield entry


def _folder_entries(folder: Path) -> Iterator[_Entry]:
    # One folder's names, sorted: the order every process of a run must agree on. A broken link is
    # listed as a problem (it is named by the folder, but there is nothing to read).
    names = sorted(entry.name for entry in _folder_images(folder))
    for name in names:
        path = folder / name
        if path.is_dir():
            continue
        if not path.exists():
            yield _Entry(path, None, f"folder {folder}", ("missing", f"{path} is a broken or looping symbolic link"))
        elif not path.is_file():  # a FIFO named like an image: reading it would wait forever
            yield _Entry(path, None, f"folder {folder}", ("not_a_file", f"{path} is not a regular file"))
        else:
            yield _Entry(path, None, f"folder {folder}")


def _manifest_entries(manifest: Path) -> Iterator[_Entry]:
    base = manifest.parent
    jsonl = manifest.suffix.lower() == ".jsonl"
    # surrogateescape: a path in a manifest may be any bytes a file name can be.
    with open(manifest, encoding="utf-8", errors="surrogateescape") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text or (not jsonl and text.startswith("#")):
                continue
            where = f"{manifest} line {number}"
            if not jsonl:
                yield _Entry(base / text, None, where)
                continue
            path, boxes, problem = _jsonl_record(text)
            yield _Entry(base / path if path else None, boxes, where, problem)


def _jsonl_record(text: str):
    """(path, boxes or None, problem or None) of one JSONL manifest line."""
    if too_many_boxes(text):
        return None, None, ("too_many_boxes", f"more than {MAX_BOXES_PER_IMAGE} boxes in one line, the most one "
                                              "image takes")
    try:
        record = parse_json(text, "the line")
    except FGDenseError as err:
        return None, None, ("bad_manifest_line", f"not JSON ({err})")
    if not isinstance(record, dict) or not isinstance(record.get("path"), str) or not record["path"].strip():
        return None, None, ("bad_manifest_line", 'expected a JSON object with a "path" string')
    boxes = record.get("boxes")
    if boxes is None:
        return record["path"], None, None
    if not isinstance(boxes, list):
        return record["path"], None, ("bad_boxes", '"boxes" must be a list of [x1, y1, x2, y2]')
    rows = box_rows(boxes)
    if isinstance(rows, int):
        return record["path"], None, ("bad_boxes", f"box {rows} is not [x1, y1, x2, y2] numbers")
    return record["path"], rows, None


__all__ = ["Item", "MANIFEST_SUFFIXES", "Sources", "path_key", "shard"]
