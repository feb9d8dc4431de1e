"""Names that files give to other files: a relative name inside its folder, never leading out of it.

Annotation files name images (``file_name``, ``f_path``) and shard indexes name weight files
(``weight_map``). Such a name is data from outside: ``../../elsewhere/x`` or an absolute path would
have fgdense read a file the user never pointed it at. The rule is lexical (``..`` and absolute
names are refused, links are followed as the folder's owner laid them out), so a hub cache whose
snapshot files link to its blobs still loads.
"""

from __future__ import annotations

import os
from pathlib import Path


def path_inside(folder, name: str) -> Path | None:
    """``folder / name``, or None when ``name`` leads outside ``folder`` (``..``, an absolute path)."""
    normal = os.path.normpath(str(name))
    if os.path.isabs(normal) or normal == ".." or normal.startswith(".." + os.sep):
        return None
    return Path(folder) / normal


def missing_file_reason(path) -> str | None:
    """Why ``path`` cannot be read as an input file, or None for a regular file: it does not exist, or it
    is a folder, pipe, device or socket (reading a pipe nobody writes to would wait forever)."""
    path = Path(path)
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is a folder, not a file" if path.is_dir() else "is not a regular file (a pipe, device or socket)"
    return None
