"""The demo's own folder, removed when the demo stops: every file the page hands out lies in it.

* ``NNNNNN-JOB/``: one folder per run of a job, offered for download (the newest ``KEEP_RUNS`` kept);
* ``views/``: pictures the page shows to be clicked on (an upload as the jobs see it, the drawn boxes;
  the newest ``KEEP_VIEWS`` kept);
* ``gradio/``: gradio's temporary files (uploads, its copies of the pictures), so they go with the rest
  instead of piling up in the system's temporary folder.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable

from PIL import Image

from ..io.files import write_all, write_picture

KEEP_RUNS = 24  # run folders kept for download; older ones are removed
KEEP_VIEWS = 64  # pictures of uploads and of drawn boxes the page shows


class WorkDir:
    """The folder ``path`` (default: a new temporary one) and what goes into it."""

    def __init__(self, path=None):
        self.path = Path(path) if path else Path(tempfile.mkdtemp(prefix="fgdense-demo-"))
        self.path.mkdir(parents=True, exist_ok=True)
        self._runs = 0
        self._lock = threading.Lock()

    @property
    def gradio(self) -> Path:
        """Where gradio keeps its temporary files for this demo."""
        return self.path / "gradio"

    def run_folder(self, job: str) -> Path:
        """A new folder for one run's files; the oldest beyond ``KEEP_RUNS`` are removed."""
        with self._lock:
            self._runs += 1
            folder = self.path / f"{self._runs:06d}-{job}"
            folder.mkdir(parents=True)
            runs = sorted(p for p in self.path.iterdir() if p.is_dir() and p.name[:6].isdigit())
            for old in runs[:-KEEP_RUNS]:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def view(self, key: str, render: Callable[[], Image.Image]) -> Path:
        """The picture ``render`` draws, written once as ``views/KEY.png`` (the newest ``KEEP_VIEWS`` kept).

        The page is always handed files, never images in memory: gradio rewrites its cached copy of an
        in-memory image each time it is returned, while a browser may be reading it (a broken picture);
        files it copies once, whole."""
        folder = self.path / "views"
        out = folder / f"{key}.png"
        with self._lock:
            if not out.exists():
                folder.mkdir(exist_ok=True)
                write_all([(out, write_picture(render()))])
                views = sorted(folder.glob("*.png"), key=lambda p: p.stat().st_mtime_ns)
                for old in views[:-KEEP_VIEWS]:
                    old.unlink(missing_ok=True)
        return out

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


__all__ = ["KEEP_RUNS", "KEEP_VIEWS", "WorkDir"]
