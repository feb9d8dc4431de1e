"""The output folder's own files: the lock that lets one run at a time write there, and the names that
earlier runs' own files (a ``--coco`` file in the folder) took, which no image's outputs may take.

Two runs writing into one folder at once would write over each other's images and merge each other's
files into their COCO files. So a run holds ``OUT/.fgdense-run.lock`` (``fcntl.flock``, exclusive) while
it works, with its process id, command and start time written in it; a second run finds the lock taken
and stops with one line naming the first. The kernel drops the lock when its holder exits, however it
exits (kill -9 included), so a lock file left by a dead run never blocks the next one. The file is
removed at the end of the run; its name ends in ``.lock``, which no image's output ever does.

A run whose ``--coco`` or ``--summary`` file lies in the output folder adds that name to
``OUT/.fgdense-reserved.txt``; every later run in the folder reads it and names its images around those
names too, so a rerun without ``--coco`` never writes an image's JSON over the last run's COCO file.

Every tool names an image's JSON ``NAME.json``, so a folder holds one kind of job's outputs: a run notes
its kind in ``OUT/.fgdense-job.txt``, and a run of another kind (grounding into a folder of segmentations)
stops with one line before it writes, unless ``--overwrite`` says to replace them. The evaluations claim
their folder as ``evaluation`` (their report.json is what a bulk tool writes for an image report.jpg).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
import warnings
from pathlib import Path

from ..errors import OutputError
from ..io.files import write_all, write_text

LOCK_NAME = ".fgdense-run.lock"
RESERVED_NAME = ".fgdense-reserved.txt"  # ends in .txt: no image output does
JOB_NAME = ".fgdense-job.txt"  # the kind of job whose outputs the folder holds
JOB_NOTE_MAX = 100  # characters of the note read and quoted

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the runs' outputs are still written all-or-nothing)
    fcntl = None


def lock_path(out) -> Path:
    return Path(out) / LOCK_NAME


def _holder(path: Path) -> str:
    """Who holds the lock, in words, from what its holder wrote into the file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        return f"process {info['pid']} ({info['command'][:200]}), started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class FolderLock:
    """The lock of one output folder: :meth:`acquire` or :class:`OutputError`; :meth:`release` at the end."""

    def __init__(self, out):
        self.path = lock_path(out)
        self.fd: int | None = None

    def acquire(self) -> "FolderLock":
        if fcntl is None:
            return self
        for _ in range(10):  # the file may be removed by its last holder between our open and our flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                raise OutputError(f"cannot lock the output folder {self.path.parent}: {err.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES):  # a filesystem without locks (ENOLCK)
                    warnings.warn(f"the output folder {self.path.parent} cannot be locked ({err.strerror}): "
                                  "make sure no other run writes into it at the same time")
                    return self
                raise OutputError(f"the output folder {self.path.parent} is in use by another run: "
                                  f"{_holder(self.path)}; wait for it to end or choose another output folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                self._describe()
                return self
            os.close(fd)  # we locked a file its holder had just removed: try the new one
        raise OutputError(f"cannot take the lock {self.path} of the output folder")

    def _describe(self) -> None:
        info = {"pid": os.getpid(), "command": " ".join(sys.argv),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        text = json.dumps(info, ensure_ascii=True).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text, 0)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still held: no other run can have locked this file meanwhile
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def reserved_names(out) -> tuple[str, ...]:
    """The names earlier runs' own files took in ``out`` (none if the folder or the list is not there)."""
    try:
        text = (Path(out) / RESERVED_NAME).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return ()
    return tuple(line for line in text.splitlines() if line and "/" not in line)


def note_reserved(out, names) -> None:
    """Add ``names`` (file names in ``out``) to the folder's reserved list, all-or-nothing."""
    known = reserved_names(out)
    new = [name for name in names if name not in known]
    if not new:
        return

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("".join(name + "\n" for name in (*known, *new)))

    write_all([(Path(out) / RESERVED_NAME, write)])


def claim(out, kind: str, overwrite: bool = False) -> None:
    """Note that ``out`` holds ``kind`` outputs; refuse (:class:`OutputError`) when it holds another kind's,
    which this run would write over, unless ``overwrite``. Called by the run holding the folder's lock."""
    path = Path(out) / JOB_NAME
    if path.is_symlink() or (path.exists() and not path.is_file()):  # not fgdense's: never followed, never replaced
        raise OutputError(f"{path} is not a file; fgdense notes there which tool's outputs the folder holds: "
                          "remove it or choose another output folder")
    try:  # a kind is a short word: a note of megabytes (not fgdense's) is neither read whole nor quoted whole
        with open(path, "rb") as f:
            holds = f.read(JOB_NOTE_MAX + 1).decode("utf-8", errors="replace").strip()
    except OSError:
        holds = ""
    if len(holds) > JOB_NOTE_MAX:
        holds = holds[:JOB_NOTE_MAX] + "..."
    if holds == kind:
        return
    if holds and not overwrite:
        raise OutputError(f"the output folder {out} holds the outputs of a {holds!r} run, which this {kind!r} run "
                          "would write over (their files share names: an image's JSON NAME.json, an evaluation's "
                          "report.json): choose another output folder, "
                          "or pass --overwrite to replace them")
    write_all([(path, write_text(kind + "\n"))])


__all__ = ["FolderLock", "JOB_NAME", "LOCK_NAME", "RESERVED_NAME", "claim", "lock_path", "note_reserved",
           "reserved_names"]
