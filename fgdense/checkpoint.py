"""Where a checkpoint lives: a local folder, or a model-hub id fetched into the hub cache.

Only configuration, weights, tokenizer and preprocessor files are ever fetched (no ``*.py``): the hub
repositories' remote code is never downloaded, let alone run.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import CheckpointError

DEFAULT_MODEL = "qihoo360/fg-clip2-base"

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
# The files whose bytes decide what a checkpoint computes (see fingerprint).
_CONTENT_PATTERNS = ("config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
                     "pytorch_model.bin.index.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json",
                     "*.model", "preprocessor_config.json")


def local_checkpoint(name_or_path: str | os.PathLike) -> Path | None:
    """The local folder ``name_or_path`` names, None for a model-hub id (not looked up here), or a
    :class:`CheckpointError` for a path that is no folder. Touches the disk only: tools check ``--model``
    with it before anything heavy loads."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{text} is a file; pass the checkpoint folder that holds config.json")
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise CheckpointError(f"checkpoint folder {text} does not exist")
    return None


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A local folder for ``name_or_path``: the folder itself, or a hub id downloaded to the cache."""
    folder = local_checkpoint(name_or_path)
    return folder if folder is not None else _download(os.fspath(name_or_path))


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


def fingerprint(folder: str | os.PathLike) -> str:
    """A SHA-256 over the names and bytes of a checkpoint folder's config, weight, tokenizer and
    preprocessor files: two folders with equal fingerprints compute the same thing, wherever they lie.

    Used to refuse mixing a resumed run's results with a different model's (a path can be reused).
    """
    folder = Path(folder)
    files = sorted({p for pattern in _CONTENT_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
