"""What the model and the processors agree on: walk types, text lengths, patch budgets, architectures,
and the FG-CLIP 2 configuration.

``fgdense.model`` and ``fgdense.processing`` are siblings that share only this module.

Released checkpoints ship a ``config.json`` written by the official code (model_type ``fgclip2``) that
carries many generic transformers keys. We keep only the keys the SigLIP 2 sub-configs know and
tolerate (and ignore) the rest, so configs written by other transformers versions still load. Sizes far
beyond any released FG-CLIP 2 / SigLIP 2 model are refused before anything is built: a config is data
from outside, and a million layers would otherwise mean minutes of allocation.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any

from transformers import PreTrainedConfig, Siglip2TextConfig, Siglip2VisionConfig
from transformers.activations import ACT2FN

from .errors import CheckpointError
from .jsontext import read_json_file

# ----------------------------------------------------------------------------------------- text
WALK_TYPES = ("short", "box", "long")
# Texts are always padded to these lengths: the model pools the LAST position, padding or not.
TEXT_LENGTH = {"short": 64, "box": 64, "long": 196}


def check_walk_type(walk_type: str) -> str:
    walk = str(walk_type).lower()
    if walk not in WALK_TYPES:
        raise ValueError(f"unknown walk_type {walk_type!r}; use one of {', '.join(WALK_TYPES)}")
    return walk


# -------------------------------------------------------------------------------------- images
# The budgets and their check live in fgdense.defaults (light: the tools check --max-patches before torch
# loads); they are part of this module's interface too.
from .defaults import CPU_DEFAULT_PATCHES, GPU_DEFAULT_PATCHES, MAX_PATCHES, check_budget  # noqa: E402,F401


# ------------------------------------------------------------------------------- architectures
@dataclasses.dataclass(frozen=True)
class Architecture:
    """The sizes of one tower (FG-CLIP 2 uses the same for both, as SigLIP 2 does)."""

    hidden: int
    layers: int
    heads: int
    mlp: int

    def describe(self) -> str:
        return f"{self.hidden} wide, {self.layers} layers, {self.heads} heads, MLP {self.mlp}"


# The released FG-CLIP 2 sizes (SigLIP 2 ViT-B/16, L/16, So400m/16) and the tiny test size.
ARCHITECTURES = {
    "tiny": Architecture(hidden=64, layers=2, heads=4, mlp=128),
    "base": Architecture(hidden=768, layers=12, heads=12, mlp=3072),
    "large": Architecture(hidden=1024, layers=24, heads=16, mlp=4096),
    "so400m": Architecture(hidden=1152, layers=27, heads=16, mlp=4304),
}
RELEASED_VOCAB_SIZE = 256000  # the Gemma tokenizer of the released checkpoints


def architecture_config(arch: str | Architecture, vocab_size: int = RELEASED_VOCAB_SIZE,
                        text: Architecture | None = None) -> "FGCLIP2Config":
    """An :class:`FGCLIP2Config` of a named size (or given sizes); ``text`` sets a different text tower."""
    if isinstance(arch, str):
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
        arch = ARCHITECTURES[arch]
    text = text or arch

    def tower(a: Architecture) -> dict:
        return dict(hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                    intermediate_size=a.mlp, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh")

    return FGCLIP2Config(dict(tower(text), vocab_size=vocab_size, max_position_embeddings=TEXT_LENGTH["short"],
                              projection_size=text.hidden),
                         dict(tower(arch), num_channels=3, patch_size=16, num_patches=256),
                         keep_len=20, longtext_len=TEXT_LENGTH["long"])


# What a checkpoint's config may ask for. The largest SigLIP 2 (g/16) has 40 layers of width 1536, MLP
# 6144; the text vocabulary is 256000 and the position tables hold 64 / 196 rows. The limits leave
# room for custom sizes and refuse only the absurd.
SIZE_LIMITS = {
    "hidden_size": 8192, "intermediate_size": 32768, "num_hidden_layers": 128, "num_attention_heads": 256,
    "vocab_size": 1_048_576, "max_position_embeddings": 4096, "num_patches": 65536, "patch_size": 64,
    "num_channels": 16,
}
LENGTH_LIMIT = 4096  # keep_len / longtext_len


def check_sizes(values: dict, tower: str, source: str) -> None:
    """Raise :class:`CheckpointError` for a size that is not a positive integer within :data:`SIZE_LIMITS`
    (or an activation transformers does not know: it would fail only when the model is first run)."""
    for key, limit in SIZE_LIMITS.items():
        if key not in values:
            continue
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
            raise CheckpointError(f"{source}: {tower}_config.{key} = {str(value)[:40]} is not a size fgdense "
                                  f"can build (a positive integer up to {limit})")
    act = values.get("hidden_act", "gelu_pytorch_tanh")
    if not isinstance(act, str) or act not in ACT2FN:
        raise CheckpointError(f"{source}: {tower}_config.hidden_act = {str(act)[:40]!r} is not an activation "
                              f"transformers knows (SigLIP 2 uses 'gelu_pytorch_tanh')")
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        raise CheckpointError(f"{source}: {tower}_config.hidden_size {hidden} is not a multiple of "
                              f"num_attention_heads {heads}")


MODEL_TYPE = "fgclip2"
# Model types whose config.json we accept: FG-CLIP 2 itself and SigLIP 2 (stage-2 initialisation).
ACCEPTED_MODEL_TYPES = ("fgclip2", "siglip2")


def _known_fields(config_cls) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)}


def _sub_config(config_cls, values: dict[str, Any] | None):
    values = dict(values or {})
    known = _known_fields(config_cls)
    return config_cls(**{k: v for k, v in values.items() if k in known})


class FGCLIP2Config:
    """Text and vision sub-configs of an FG-CLIP 2 model.

    ``text_config`` is a :class:`transformers.Siglip2TextConfig`, ``vision_config`` a
    :class:`transformers.Siglip2VisionConfig`; ``keep_len`` and ``longtext_len`` describe the
    long-text position tables (the first ``keep_len`` positions come from
    ``position_embedding_ori``, the rest from ``position_embedding_res``).
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        text_config: dict | Siglip2TextConfig | None = None,
        vision_config: dict | Siglip2VisionConfig | None = None,
        keep_len: int | None = None,
        longtext_len: int | None = None,
        background_threshold: float | None = None,
    ):
        text_dict = text_config.to_dict() if isinstance(text_config, Siglip2TextConfig) else dict(text_config or {})
        vision_dict = (
            vision_config.to_dict() if isinstance(vision_config, Siglip2VisionConfig) else dict(vision_config or {})
        )
        check_sizes(text_dict, "text", "config")
        check_sizes(vision_dict, "vision", "config")
        # The official config stores keep_len/longtext_len inside text_config.
        self.keep_len = _length(keep_len if keep_len is not None else text_dict.get("keep_len", 20), "keep_len")
        self.longtext_len = _length(longtext_len if longtext_len is not None else text_dict.get("longtext_len", 196),
                                    "longtext_len")
        # Token ids are the tokenizer's business; released configs carry CLIP-era values that
        # transformers would warn about, so they are not kept.
        text_dict.update(pad_token_id=None, bos_token_id=None, eos_token_id=None)
        # The segmenter's background cosine calibrated on a fine-tuning run's masks (fgdense.train.calibration);
        # None (released checkpoints): the model's own sigmoid match point is used.
        self.background_threshold = _threshold(background_threshold)
        self.text_config = _sub_config(Siglip2TextConfig, text_dict)
        self.vision_config = _sub_config(Siglip2VisionConfig, vision_dict)
        self.vision_config.vision_use_head = True
        if self.keep_len >= self.text_config.max_position_embeddings:
            raise CheckpointError(f"config: keep_len ({self.keep_len}) must be smaller than "
                                  f"max_position_embeddings ({self.text_config.max_position_embeddings})")

    @property
    def projection_dim(self) -> int:
        return self.text_config.hidden_size

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "FGCLIP2Config":
        model_type = values.get("model_type")
        if model_type not in ACCEPTED_MODEL_TYPES:
            raise CheckpointError(
                f"{source} has model_type {model_type!r}; fgdense loads FG-CLIP 2 ('fgclip2') checkpoints "
                "(and SigLIP 2 ones through fgdense.init_from_siglip2)"
            )
        text, vision = values.get("text_config"), values.get("vision_config")
        if not isinstance(text, dict) or not isinstance(vision, dict):
            raise CheckpointError(f"{source} lacks text_config or vision_config")
        try:
            return cls(text, vision, background_threshold=values.get("background_threshold"))
        except CheckpointError as err:
            raise CheckpointError(str(err).replace("config:", f"{source}:", 1)) from None
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source} is not a usable FG-CLIP 2 config: {str(err)[:200]}") from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "FGCLIP2Config":
        if not os.path.isfile(path):
            raise CheckpointError(f"no config.json at {path}")
        values = read_json_file(path, str(path), CheckpointError)
        if not isinstance(values, dict):
            raise CheckpointError(f"{path} does not hold a JSON object")
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        text = _plain_dict(self.text_config)
        text.update(keep_len=self.keep_len, longtext_len=self.longtext_len, model_type="fgclip2_text_model")
        vision = _plain_dict(self.vision_config)
        vision["model_type"] = "fgclip2_vision_model"
        out = {"model_type": MODEL_TYPE, "architectures": ["FG_CLIP2_Model"], "text_config": text, "vision_config": vision}
        if self.background_threshold is not None:
            out["background_threshold"] = self.background_threshold
        return out

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)

    def copy(self) -> "FGCLIP2Config":
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        t, v = self.text_config, self.vision_config
        return (
            f"FGCLIP2Config(vision: {v.hidden_size}w x {v.num_hidden_layers}L, {v.num_attention_heads} heads, "
            f"patch {v.patch_size}; text: {t.hidden_size}w x {t.num_hidden_layers}L, vocab {t.vocab_size}, "
            f"{t.max_position_embeddings}/{self.longtext_len} positions)"
        )


def _plain_dict(config) -> dict[str, Any]:
    """The architecture fields of a SigLIP 2 sub-config (not transformers' generic ones)."""
    generic = _known_fields(PreTrainedConfig)
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(type(config)) if f.name not in generic}


def _threshold(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1:
        raise CheckpointError(f"config: background_threshold = {str(value)[:40]} is not a cosine (a number from -1 to 1)")
    return float(value)


def _length(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= LENGTH_LIMIT:
        raise CheckpointError(f"config: {name} = {str(value)[:40]} is not a length fgdense can build "
                              f"(a positive integer up to {LENGTH_LIMIT})")
    return value
