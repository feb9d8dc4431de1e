"""What a bulk run did: images written, skipped (outputs already complete), bad (by reason), and where the time went.

Each process counts its own share (:class:`ShareCounts`); the main process merges them
(:func:`merge`), prints :func:`describe`'s lines, lists the bad files in ``bad_files.jsonl`` in the
output folder (a valid JSONL manifest: after fixing them, the same command run on it retries just
those), and writes the whole summary as JSON where ``--summary`` asks.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..io.files import write_all, write_text

BAD_FILES = "bad_files.jsonl"  # never an image's output name: those end in .json or .png
RETRY_BAD_FILES = "bad_files.retry.jsonl"  # the list of a run that retries BAD_FILES (reads it)
STAGES = ("decode", "model", "write")


@dataclass
class ShareCounts:
    """One process's share of a run. ``seconds``: ``wall`` for the share; ``decode`` summed over the
    DataLoader workers (decoding, processing, checking outputs); ``model`` the task on the model's
    process; ``write`` pictures and files in the writer thread; ``waiting`` the model's process idle,
    waiting for decoded images."""

    rank: int = 0
    images: int = 0
    written: int = 0
    skipped: int = 0
    bad: list[dict] = field(default_factory=list)
    seconds: dict = field(default_factory=lambda: dict.fromkeys(("wall", *STAGES, "waiting"), 0.0))

    def add_bad(self, item, reason: str, detail: str) -> None:
        # An absolute path (and the boxes): the list read as a manifest retries exactly these images.
        entry = {"path": item.key, "reason": reason, "detail": detail, "where": item.where}
        if item.boxes is not None:
            entry["boxes"] = item.boxes.tolist()
        self.bad.append(entry)


def merge(shares: list[ShareCounts]) -> dict:
    """The run's summary from every process's counts (as JSON-ready data)."""
    bad = [entry for share in shares for entry in share.bad]
    return {
        "images": sum(s.images for s in shares),
        "written": sum(s.written for s in shares),
        "skipped_complete": sum(s.skipped for s in shares),
        "bad": len(bad),
        "bad_by_reason": dict(sorted(Counter(entry["reason"] for entry in bad).items())),
        "processes": len(shares),
        "wall_s": round(max(s.seconds["wall"] for s in shares), 3),
        "seconds_summed_over_processes": {k: round(sum(s.seconds[k] for s in shares), 3)
                                          for k in (*STAGES, "waiting")},
        "per_process": [{k: v for k, v in asdict(s).items() if k != "bad"} | {"bad": len(s.bad)} for s in shares],
    }


def describe(summary: dict, out: Path) -> list[str]:
    """The lines a run ends with: counts, then where the time went."""
    parts = [f"{summary['written']} written to {out}"]
    if summary["skipped_complete"]:
        parts.append(f"{summary['skipped_complete']} skipped (outputs already complete; --overwrite redoes them)")
    if summary["bad"]:
        reasons = ", ".join(f"{reason} {count}" for reason, count in summary["bad_by_reason"].items())
        listed = summary.get("bad_files") or "not listed: both list names are this run's inputs"
        parts.append(f"{summary['bad']} bad ({reasons}; listed in {listed})")
    lines = [f"{summary['images']} image(s): " + ", ".join(parts)]
    spent = summary["seconds_summed_over_processes"]
    over = f" summed over {summary['processes']} processes" if summary["processes"] > 1 else ""
    lines.append(f"{summary['wall_s']:.1f} s after start-up; decode {spent['decode']:.1f} s (workers), model {spent['model']:.1f} s, "
                 f"write {spent['write']:.1f} s, waiting for input {spent['waiting']:.1f} s{over}")
    return lines


def bad_list_path(out: Path, inputs=()) -> Path | None:
    """Where the run lists its bad files: ``OUT/bad_files.jsonl``, or, when the run reads that very file (the
    last run's list given as a manifest, to retry it), ``OUT/bad_files.retry.jsonl``; an input is never
    written over. None when both are inputs."""
    read = {os.path.realpath(p) for p in inputs}
    for name in (BAD_FILES, RETRY_BAD_FILES):
        path = Path(out) / name
        if os.path.realpath(path) not in read:
            return path
    return None


def write_bad_list(path: Path | None, shares: list[ShareCounts]) -> Path | None:
    """The list of every bad file at ``path`` (from :func:`bad_list_path`); an old one is removed when
    there are none."""
    bad = [entry for share in shares for entry in share.bad]
    if path is None:
        return None
    if not bad:
        if path.is_file():
            path.unlink()
        return None
    write_all([(path, write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in bad)))])
    return path


__all__ = ["BAD_FILES", "RETRY_BAD_FILES", "STAGES", "ShareCounts", "bad_list_path", "describe", "merge",
           "write_bad_list"]
