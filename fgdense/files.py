"""Writing output files all-or-nothing, with ordinary permissions.

Every tool writes through here: files go to a temporary name beside their target and are renamed
into place only when complete, so an interrupted or failing run never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are private (0600)


def write_all(writes) -> None:
    """Write several files all-or-nothing: ``writes`` is a list of (path, write(temp_path)).

    Every file is first written to a temporary name beside its target; only when all are complete are
    they renamed into place, so a failure part-way (a full disk) leaves no partial set behind.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, write in writes:
            path = Path(path)
            fd, tmp = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            staged.append((tmp, path))
            write(tmp)
            os.chmod(tmp, FILE_MODE)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.remove(tmp)


def write_text(text: str):
    """A ``write(temp_path)`` for :func:`write_all` that writes UTF-8 text."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return write


def write_json(path, value) -> None:
    """Write ``value`` as indented UTF-8 JSON, atomically."""
    write_all([(path, write_text(json.dumps(value, ensure_ascii=False, indent=2)))])
