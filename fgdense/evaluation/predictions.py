"""The predictions file of a box-classification run: one JSON line per annotation, and resuming from it.

The first line is a header naming the run: the annotation file, the model's content fingerprint (a hash
of its config, weights, tokenizer and preprocessor files, so a different model at the same path is
noticed), the protocol, the text policy and the precision. A run resumes only from a file whose header
is its own; a file that is not a predictions file at all is never written over. Under ``torchrun`` each
rank appends to its own part file (``NAME.rank<r>.part``), and rank 0 folds them into the main file.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DatasetError
from ..io.files import write_all, write_text
from .boxclass_data import BoxClassDataset

HEADER_KEY = "fgdense_boxclass_predictions"


def part_path(predictions: Path, rank: int) -> Path:
    return predictions.with_name(f"{predictions.name}.rank{rank}.part")


def part_paths(predictions: Path) -> list[Path]:
    return sorted(predictions.parent.glob(f"{predictions.name}.rank*.part"))


def dump(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def read_header(path: Path) -> dict | None:
    """The run header of a predictions file; None for an empty file; :class:`DatasetError` for a file that
    is not a predictions file (so nothing writes over it)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except UnicodeDecodeError:
        first = "\0"
    if not first.strip():
        return None
    try:
        header = json.loads(first).get(HEADER_KEY)
    except (json.JSONDecodeError, AttributeError):
        header = None
    if not isinstance(header, dict):
        raise DatasetError(f"{path} is not an fgdense predictions file; refusing to write over it "
                           "(name a new file for --predictions)")
    return header


def check_predictions_file(predictions: Path, header: dict, resume: bool) -> None:
    """Refuse a predictions file this run must not use: not a predictions file at all, or (resuming) another
    run's, or (starting over) another run's that would be lost."""
    if not predictions.exists():
        if resume:
            raise DatasetError(f"predictions file {predictions} does not exist: nothing to resume "
                               "(run without --resume to start)")
        return
    found = read_header(predictions)
    if found is None or found == header:
        return
    differing = sorted(k for k in set(found) | set(header) if found.get(k) != header.get(k))
    if resume:
        raise DatasetError(f"predictions file {predictions} was written by another run (different "
                           f"{', '.join(differing)}); resume with the same annotations, model, protocol, text mask "
                           "and precision, or write a new predictions file")
    raise DatasetError(f"predictions file {predictions} holds another run's predictions (different "
                       f"{', '.join(differing)}); remove it or name a new file, so that run is not lost")


def read_done(paths, dataset: BoxClassDataset, header: dict) -> dict[int, list[dict]]:
    """Records of the images fully present in the given prediction files, by image index.

    A line cut short by an interruption, and an image with only some of its annotations written, are
    left out: those images are evaluated again.
    """
    by_id = {image.image_id: image for image in dataset.images}
    found: dict[int, list[dict]] = {}
    for path in paths:
        if not path.is_file():
            continue
        if read_header(path) not in (None, header):
            raise DatasetError(f"predictions part file {path} was written by another run; remove it")
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f):
                if number == 0:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                image = by_id.get(record.get("image_id"))
                if image is None:
                    raise DatasetError(f"predictions file {path} names image {record.get('image_id')!r}, "
                                       "which the annotation file does not have")
                found.setdefault(image.index, []).append(record)
    return {i: recs for i, recs in found.items() if len(recs) == len(dataset.images[i].annotations)}


def rewrite(predictions: Path, header: dict, done: dict[int, list[dict]]) -> None:
    """The predictions file with every finished image in dataset order; rank part files removed."""
    lines = [dump({HEADER_KEY: header})] + [dump(r) for i in sorted(done) for r in done[i]]
    write_all([(predictions, write_text("".join(lines)))])
    for part in part_paths(predictions):
        part.unlink()


__all__ = ["HEADER_KEY", "check_predictions_file", "dump", "part_path", "part_paths", "read_done", "read_header",
           "rewrite"]
