"""How a bulk run goes, as plain data: built by the tools' argument checks before torch loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunOptions:
    """How a bulk run goes: ``out`` folder; ``workers`` decoding processes (0: decode in this process);
    ``batch_size`` images and ``max_batch_tokens`` patches per model pass at most; ``overwrite`` redoes
    images whose outputs are complete; ``coco`` the COCO results file to write (or None); ``summary`` a
    JSON file for the run's summary (or None); ``total`` the number of items in the run (for progress);
    ``reserved`` file names in ``out`` no image output may take; ``inputs`` the files the run reads besides
    its images (manifests), which its own files never write over."""

    out: Path
    workers: int = 0
    batch_size: int = 8
    max_batch_tokens: int = 16384
    overwrite: bool = False
    coco: Path | None = None
    summary: Path | None = None
    progress: bool = True
    total: int | None = None
    reserved: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()


__all__ = ["RunOptions"]
