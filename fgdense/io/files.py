"""Writing output files all-or-nothing, with ordinary permissions, and never over an input.

Every tool writes through here: files go to a temporary name beside their target and are renamed
into place only when complete, so an interrupted or failing run never leaves a half-written file.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import OutputError, OutputNameError


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are private (0600)


NAME_MAX = 255  # bytes in one file name on Linux's file systems (ext4, xfs, btrfs, NFS...)
TEMPORARY_EXTRA = 27  # bytes write_all's temporary names add to a target's name: ".NAME.<12>.<8>.tmp"


def name_fits(name: str) -> bool:
    """Whether a file named ``name`` (and write_all's temporary name for it) can be made in any folder."""
    return len(os.fsencode(name)) + TEMPORARY_EXTRA <= NAME_MAX


def write_all(writes) -> None:
    """Write several files all-or-nothing: ``writes`` is a list of (path, write(temp_path)).

    Every file is first written to a temporary name beside its target; only when all are complete are
    they renamed into place, so a failure part-way (a full disk, Ctrl-C) leaves no partial set behind. A
    failure is an :class:`OutputError` naming the target, never the temporary name.
    """
    # One token for this call's temporary names: the clean-up finds them by name, so a temporary file
    # made just before an interruption (before this code could note it) is removed too.
    token = uuid.uuid4().hex[:12]
    targets = [Path(path) for path, _ in writes]
    target = None
    try:
        for target, (_, write) in zip(targets, writes):
            if target.is_dir():
                raise OutputError(f"{target} is a folder; name a file to write")
            fd, tmp = tempfile.mkstemp(dir=target.resolve().parent, prefix=f".{target.name}.{token}.", suffix=".tmp")
            os.close(fd)
            write(tmp)
            os.chmod(tmp, FILE_MODE)
        for target in targets:
            os.replace(_temporary(target, token), target)
    except OSError as err:
        # A name the filesystem refuses concerns this file alone; anything else (a full disk) the folder.
        kind = OutputNameError if err.errno in (errno.ENAMETOOLONG, errno.EILSEQ) else OutputError
        raise kind(f"cannot write {target}: {err.strerror or err}") from None
    finally:
        for path in targets:
            for leftover in path.resolve().parent.glob(f".{glob.escape(path.name)}.{token}.*.tmp"):
                leftover.unlink(missing_ok=True)


def _temporary(target: Path, token: str) -> Path:
    """The temporary file this call wrote for ``target``."""
    return next(target.resolve().parent.glob(f".{glob.escape(target.name)}.{token}.*.tmp"))


def write_text(text: str):
    """A ``write(temp_path)`` for :func:`write_all` that writes UTF-8 text.

    A file name that is not UTF-8 (``\\xff.jpg``) reaches the text as a lone surrogate; it is written as
    the escape ``\\udcff``, which inside a JSON string reads back as that very name."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
    return write


def write_picture(picture):
    """A ``write(temp_path)`` for :func:`write_all` that saves a PIL image as PNG."""
    return lambda tmp: picture.save(tmp, format="PNG")


def shortest_floats(value):
    """``value`` (dicts, lists, numbers, numpy scalars) with every float that is a float32 value written as
    its shortest float32 spelling: a threshold of 0.1 computed in float32 reads ``0.1``, not
    ``0.10000000149011612``. Read back and cast to float32 it is the same number; other floats are kept."""
    if isinstance(value, dict):
        return {key: shortest_floats(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [shortest_floats(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and abs(value) <= FLOAT32_MAX and float(np.float32(value)) == value:
        return float(str(np.float32(value)))
    return value


def json_text(value) -> str:
    """``value`` as the indented UTF-8 JSON every result file holds (floats by :func:`shortest_floats`)."""
    return json.dumps(shortest_floats(value), ensure_ascii=False, indent=2)


def write_json(path, value) -> None:
    """Write ``value`` as indented UTF-8 JSON, atomically."""
    write_all([(path, write_text(json.dumps(value, ensure_ascii=False, indent=2)))])


def same_file(a, b) -> bool:
    """Whether two paths name the same file (through links and relative spellings too)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(outputs: dict[str, object] | list, inputs: dict[str, object] | Iterable = (),
                  folders: bool = True) -> None:
    """Refuse output paths that cannot or must not be written, before any work.

    ``outputs`` maps a name for the message (``"--out"``) to a path (or None: not written), or is a list
    of such pairs; ``inputs`` maps names to paths or lists of paths that the run reads. An output that is
    one of the inputs, two outputs on one path, or (with ``folders``) an output whose folder does not exist
    is an :class:`OutputError`.
    """
    named_inputs = []
    for name, value in (inputs.items() if isinstance(inputs, dict) else [("input", p) for p in inputs]):
        for path in (value if isinstance(value, (list, tuple)) else [value]):
            if path is not None:
                named_inputs.append((name, path))
    pairs = outputs.items() if isinstance(outputs, dict) else outputs
    given = [(name, path) for name, path in pairs if path is not None]
    for i, (name, path) in enumerate(given):
        for input_name, input_path in named_inputs:
            if same_file(path, input_path):
                raise OutputError(f"{name} {path} is the {input_name} {input_path}; fgdense never writes over "
                                  "its inputs: choose another output path")
        for other_name, other in given[i + 1:]:
            if same_file(path, other):
                raise OutputError(f"{name} and {other_name} are the same file ({path})")
        if folders and not Path(path).resolve().parent.is_dir():
            raise OutputError(f"the folder of {name} {path} does not exist")
        if Path(path).is_dir():
            raise OutputError(f"{name} {path} is a folder; name a file to write")


def check_output_folder(out_dir, name: str = "--out") -> Path:
    """``out_dir`` if it is (or can be created as) a writable folder, else :class:`OutputError` naming it."""
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{name} {out} is a file, not a folder")
        try:
            with tempfile.TemporaryFile(dir=out):
                pass
        except OSError:
            raise OutputError(f"cannot write to the output folder {out}") from None
        return out
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create the output folder {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create the output folder {out}: {parent} is not writable")
    return out


__all__ = ["FILE_MODE", "NAME_MAX", "check_output_folder", "check_outputs", "json_text", "name_fits", "same_file",
           "shortest_floats", "write_all", "write_json", "write_picture", "write_text"]
