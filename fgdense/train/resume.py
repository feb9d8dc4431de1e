"""Which checkpoint ``--resume`` continues from, and what it must hold before mmengine reads it.

mmengine resumes from the file its ``last_checkpoint`` names, an absolute path: in a copied work dir
that is the original folder's checkpoint. Here a run resumes only from its own work dir (the copy's
file of that name), and the checkpoint is checked first: whole (every zip member's checksum), plain
data (PyTorch's weights-only loader, so nothing in it runs), an mmengine training checkpoint, of this
model. mmengine would also read a ``config`` kept in a checkpoint's ``meta`` as Python and run it:
fgdense never writes one and refuses a checkpoint that carries one.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError, shorten

SECTIONS = ("meta", "state_dict", "optimizer", "message_hub")


def latest_checkpoint(work_dir) -> Path | None:
    """The checkpoint ``work_dir/last_checkpoint`` names, found in ``work_dir`` itself (None: none)."""
    work_dir = Path(work_dir)
    record = work_dir / "last_checkpoint"
    if not record.is_file():
        return None
    try:
        named = record.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot resume: {record} cannot be read ({err})") from None
    if not named:
        return None
    path = Path(named) if Path(named).is_absolute() else work_dir / named
    if path.parent.resolve() != work_dir.resolve():
        # A copied or moved work dir: its own file of that name, never the original folder's.
        own = work_dir / path.name
        if not own.is_file():
            raise CheckpointError(f"cannot resume: {record} names {named}, outside {work_dir}, which holds no "
                                  f"{path.name}; resume in the folder that holds it, or start afresh")
        path = own
    return path


def check_resume_checkpoint(work_dir, load_from=None) -> Path | None:
    """The checkpoint ``--resume`` will continue from (``load_from`` if given, else the work dir's latest;
    None: there is none and the run starts afresh), checked whole and a training checkpoint."""
    path = Path(load_from) if load_from else latest_checkpoint(work_dir)
    if path is None:
        return None
    where = f" (named in {Path(work_dir) / 'last_checkpoint'})" if not load_from else ""
    problem = _damage(path)
    if problem:
        raise CheckpointError(f"cannot resume: the latest checkpoint {path}{where} {problem}; delete it and point "
                              "last_checkpoint at an earlier one, or start afresh without --resume")
    read_training_checkpoint(path)
    return path


def _damage(path: Path) -> str | None:
    if not path.is_file():
        return "is missing"
    try:
        with zipfile.ZipFile(path) as archive:  # torch.save writes a zip archive: every member's CRC is checked
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"is damaged or cut short ({err})"
    return f"is damaged ({bad} fails its checksum)" if bad is not None else None


def read_training_checkpoint(path) -> dict:
    """An mmengine training checkpoint's sections, tensors memory-mapped (nothing large is read), or
    :class:`CheckpointError` saying why it cannot be resumed from."""
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        # torch's message advises loading with weights_only=False, i.e. running the file's code: never.
        raise CheckpointError(f"cannot resume from {path}: it holds Python objects beyond a training "
                              "checkpoint's plain data; fgdense refuses to load it") from None
    except Exception as err:
        raise CheckpointError(f"cannot resume from {path}: not a loadable checkpoint ({type(err).__name__})") from None
    missing = [key for key in SECTIONS if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(key), dict)]
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if not missing and not all(isinstance(meta.get(k), int) for k in ("epoch", "iter")):
        missing = ["meta's epoch and iter"]
    if missing:
        raise CheckpointError(f"cannot resume from {path}: it is not an fgdense training checkpoint "
                              f"(no {', '.join(missing)})")
    if "config" in meta:
        raise CheckpointError(f"cannot resume from {path}: it carries a config, which mmengine would run as Python; "
                              "fgdense never writes one and does not load it")
    return checkpoint


def check_fits(model: torch.nn.Module, path) -> None:
    """Refuse a training checkpoint whose weights are not this model's (names and shapes)."""
    state = read_training_checkpoint(path)["state_dict"]
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    extra = sorted(k for k in state if k not in expected)
    shapes = sorted(k for k in expected
                    if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape))
    if missing or extra or shapes:
        found = [f"{what}: {shorten(keys, 2)}" for what, keys in (("missing", missing), ("not in this model", extra),
                                                                  ("other shapes", shapes)) if keys]
        raise CheckpointError(f"cannot resume from {path}: it is the checkpoint of another model ({'; '.join(found)}); "
                              "resume with the config it was trained with, or start afresh")
