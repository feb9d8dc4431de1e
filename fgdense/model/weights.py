"""Reading and writing FG-CLIP 2 weights.

Weights are ``model.safetensors`` (single or sharded with an index) or ``pytorch_model.bin``. They are
never executed as code: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, shorten
from ..paths import path_inside

# Scalars the official training model keeps in released checkpoints; inference does not use them.
TRAINING_ONLY_KEYS = frozenset({"logit_scale_finegraind", "logit_scale_hardneg"})


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder, from safetensors (single/sharded) or a weights-only .bin."""
    for index_name, loader in (("model.safetensors.index.json", _load_safetensors), ("pytorch_model.bin.index.json", _load_bin)):
        index = folder / index_name
        if index.is_file():
            state: dict[str, torch.Tensor] = {}
            for shard in _shards(index):
                state.update(loader(shard))
            return state
    if (folder / "model.safetensors").is_file():
        return _load_safetensors(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return _load_bin(folder / "pytorch_model.bin")
    raise CheckpointError(f"{folder} has no weights (model.safetensors, a sharded index, or pytorch_model.bin)")


def _shards(index: Path) -> list[Path]:
    """The weight files a shard index names, each inside the checkpoint folder (never beside it)."""
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{index} is not a valid shard index: {err}") from None
    shards = []
    for name in names:
        path = path_inside(index.parent, name) if isinstance(name, str) and name else None
        if path is None:
            raise CheckpointError(f"{index} names the weight file {str(name)[:100]!r} outside the checkpoint "
                                  "folder; a shard index may only name files inside its folder")
        shards.append(path)
    return shards


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weight shard {path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from None


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weight shard {path} is missing")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises retrying with weights_only=False, i.e. running the file's code:
        # never pass that on.
        raise CheckpointError(f"{path} holds more than tensors (Python objects or code); fgdense only loads "
                              "plain weights and refuses it") from None
    except Exception as err:
        raise CheckpointError(f"{path} is not a loadable PyTorch weights file "
                              f"({type(err).__name__}; truncated or corrupt?)") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` the model takes; raise on missing or mis-shaped ones, warn on extras."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    problems = []
    integer = sorted(f"{k} ({str(state[k].dtype).replace('torch.', '')})" for k, v in expected.items()
                     if k in state and v.is_floating_point() and not state[k].is_floating_point())
    if integer:
        problems.append(f"weights that are not floating point: {shorten(integer, 3)}")
    if missing:
        problems.append(f"missing parameters: {shorten(missing)}")
    if mismatched:
        problems.append(f"shape mismatches: {shorten(mismatched, 3, '; ')}")
    if problems:
        raise CheckpointError(f"{source} does not fit the FG-CLIP 2 model its config describes: " + " | ".join(problems))
    # A NaN or infinite weight turns every score into NaN, silently: refused here, where the file is named.
    broken = sorted(k for k in expected if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()))
    if broken:
        raise CheckpointError(f"{source} holds non-finite weights (NaN or infinity) in {shorten(broken, 3)}; the "
                              "checkpoint is damaged (or was saved from a run whose loss diverged)")
    unexpected = sorted(k for k in state if k not in expected and k not in TRAINING_ONLY_KEYS)
    if unexpected:
        warnings.warn(f"{source}: ignoring parameters the model does not use: {shorten(unexpected)}", stacklevel=3)
    return {k: state[k] for k in expected}


def as_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if str(dtype) not in names:
        raise CheckpointError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
    return names[str(dtype)]


def save_model(model, folder) -> None:
    """Write ``config.json`` and ``model.safetensors`` (contiguous CPU tensors) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def save_checkpoint(model, folder, tokenizer=None, processor=None) -> Path:
    """A complete checkpoint folder: config, weights, and the tokenizer / preprocessor files if given."""
    folder = Path(folder)
    save_model(model, folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    if processor is not None:
        processor.save_pretrained(folder)
    return folder
