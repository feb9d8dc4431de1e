"""Finding, reading and writing FG-CLIP 2 checkpoints.

A checkpoint is a folder (or a model-hub id downloaded into the hub cache) with ``config.json``,
weights as ``model.safetensors`` (single or sharded with an index) or ``pytorch_model.bin``, and the
tokenizer and preprocessor files. Weights are never executed as code: safetensors, or
``torch.load(weights_only=True)``. The hub repositories' remote code is never downloaded.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .config import FGCLIP2Config

# Scalars the official training model keeps in released checkpoints; inference does not use them.
TRAINING_ONLY_KEYS = frozenset({"logit_scale_finegraind", "logit_scale_hardneg"})

# What a checkpoint download may fetch: configuration, weights, tokenizer, preprocessor. No *.py.
HUB_ALLOW_PATTERNS = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "*.model",
    "preprocessor_config.json",
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A local folder for ``name_or_path``: the folder itself, or a hub id downloaded to the cache."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{text} is a file; pass the checkpoint folder that holds config.json")
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise CheckpointError(f"checkpoint folder {text} does not exist")
    return _download(text)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=HUB_ALLOW_PATTERNS))
    except Exception as err:  # offline, unknown repo, gated repo: all end the same way for the user
        raise CheckpointError(
            f"could not get {repo_id!r} from the model hub ({type(err).__name__}) and no local folder of that "
            f"name exists; download it where you have internet and pass the local folder instead "
            f"(e.g. /path/to/{repo_id.split('/')[-1]})"
        ) from None


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder, from safetensors (single/sharded) or a weights-only .bin."""
    for index_name, loader in (("model.safetensors.index.json", _load_safetensors), ("pytorch_model.bin.index.json", _load_bin)):
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (KeyError, ValueError) as err:
                raise CheckpointError(f"{index} is not a valid shard index: {err}") from None
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(loader(folder / shard))
            return state
    if (folder / "model.safetensors").is_file():
        return _load_safetensors(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return _load_bin(folder / "pytorch_model.bin")
    raise CheckpointError(f"{folder} has no weights (model.safetensors, a sharded index, or pytorch_model.bin)")


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
    except Exception as err:
        raise CheckpointError(f"{path} is not a loadable weights-only PyTorch file: {err}") from None
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
    if missing:
        problems.append(f"missing parameters: {', '.join(missing)}")
    if mismatched:
        problems.append(f"shape mismatches: {'; '.join(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the FG-CLIP 2 model its config describes: " + " | ".join(problems))
    unexpected = sorted(k for k in state if k not in expected and k not in TRAINING_ONLY_KEYS)
    if unexpected:
        warnings.warn(f"{source}: ignoring parameters the model does not use: {', '.join(unexpected)}", stacklevel=3)
    return {k: state[k] for k in expected}


def load_model(name_or_path, device=None, dtype=None, attn_implementation: str = "sdpa"):
    """Build an :class:`FGCLIP2Model` from a checkpoint folder or hub id, in eval mode.

    ``dtype`` (default float32) and ``device`` (default CPU) place the weights; ``attn_implementation``
    is ``"sdpa"`` (fused kernels) or ``"eager"`` (explicit softmax, for checking).
    """
    from .modeling import FGCLIP2Model

    folder = resolve_checkpoint(name_or_path)
    config = FGCLIP2Config.from_json_file(folder / "config.json")
    state = read_state_dict(folder)
    # Build on the meta device: no time is spent on random initialisation that loading overwrites.
    with torch.device("meta"):
        model = FGCLIP2Model(config, attn_implementation=attn_implementation)
    state = check_state_dict(model, state, str(folder))
    model.load_state_dict(state, strict=True, assign=True)
    model.name_or_path = str(name_or_path)
    model.checkpoint_folder = folder
    # Like transformers' default: fp32 unless asked otherwise, whatever precision the file stores.
    model = model.to(dtype=_as_dtype(dtype or torch.float32))
    if device is not None:
        model = model.to(device)
    return model.eval()


def _as_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if str(dtype) not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
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
