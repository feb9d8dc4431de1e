"""FG-CLIP 2 configuration: a SigLIP 2 text and vision config plus the long-text settings.

Released checkpoints ship a ``config.json`` written by the official code (model_type
``fgclip2``) that carries many generic transformers keys. We keep only the keys the
SigLIP 2 sub-configs know and tolerate (and ignore) the rest, so configs written by
other transformers versions still load.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any

from transformers import PreTrainedConfig, Siglip2TextConfig, Siglip2VisionConfig

from ..errors import CheckpointError

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
    ):
        text_dict = text_config.to_dict() if isinstance(text_config, Siglip2TextConfig) else dict(text_config or {})
        vision_dict = (
            vision_config.to_dict() if isinstance(vision_config, Siglip2VisionConfig) else dict(vision_config or {})
        )
        # The official config stores keep_len/longtext_len inside text_config.
        self.keep_len = int(keep_len if keep_len is not None else text_dict.get("keep_len", 20))
        self.longtext_len = int(longtext_len if longtext_len is not None else text_dict.get("longtext_len", 196))
        # Token ids are the tokenizer's business; released configs carry CLIP-era values that
        # transformers would warn about, so they are not kept.
        text_dict.update(pad_token_id=None, bos_token_id=None, eos_token_id=None)
        self.text_config = _sub_config(Siglip2TextConfig, text_dict)
        self.vision_config = _sub_config(Siglip2VisionConfig, vision_dict)
        self.vision_config.vision_use_head = True
        if self.keep_len >= self.text_config.max_position_embeddings:
            raise ValueError(
                f"keep_len ({self.keep_len}) must be smaller than max_position_embeddings "
                f"({self.text_config.max_position_embeddings})"
            )

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
        if "text_config" not in values or "vision_config" not in values:
            raise CheckpointError(f"{source} lacks text_config or vision_config")
        return cls(values["text_config"], values["vision_config"])

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "FGCLIP2Config":
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except FileNotFoundError:
            raise CheckpointError(f"no config.json at {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise CheckpointError(f"{path} does not hold a JSON object")
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        text = _plain_dict(self.text_config)
        text.update(keep_len=self.keep_len, longtext_len=self.longtext_len, model_type="fgclip2_text_model")
        vision = _plain_dict(self.vision_config)
        vision["model_type"] = "fgclip2_vision_model"
        return {"model_type": MODEL_TYPE, "architectures": ["FG_CLIP2_Model"], "text_config": text, "vision_config": vision}

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
