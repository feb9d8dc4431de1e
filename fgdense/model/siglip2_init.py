"""SigLIP 2 -> FG-CLIP 2 initialisation (the start of stage-2 training).

The official recipe: the 64-row text position table is stretched 4x into the 196-row long tables
(first ``keep_len`` rows kept, the rest linearly interpolated between neighbours, the last rows
extrapolated from the final difference); the text head is copied into ``longtext_head`` and
``boxtext_head``; the vision attention-pooling head is copied into ``dense_feature_head``.
"""

from __future__ import annotations


import torch

from ..checkpoint import resolve_checkpoint
from ..config import FGCLIP2Config
from ..errors import CheckpointError
from ..jsontext import read_json_file
from .modeling import FGCLIP2Model
from .weights import check_state_dict, read_state_dict


def stretch_position_embedding(source: torch.Tensor, keep_len: int = 20) -> torch.Tensor:
    """(L, D) -> (4L - 3*keep_len, D) long-text position table, as the official ``resize_postion_embeding``."""
    length, _ = source.shape
    if not 0 < keep_len < length - 1:
        raise ValueError(f"keep_len must lie in (0, {length - 1}), got {keep_len}")
    a, b = source[keep_len : length - 1], source[keep_len + 1 : length]
    # Rows keep_len + 4i + j, j = 0..3: a weighted (4-j)/4, b weighted j/4.
    middle = torch.stack([(4 - j) * a / 4 + j * b / 4 for j in range(4)], dim=1).reshape(-1, source.shape[1])
    last, step = source[length - 1], source[length - 1] - source[length - 2]
    tail = torch.stack([last + j * step / 4 for j in range(4)])
    return torch.cat([source[:keep_len], middle, tail])


def fgclip2_config_from_siglip2(values: dict, keep_len: int = 20) -> FGCLIP2Config:
    length = values.get("text_config", {}).get("max_position_embeddings", 64)
    return FGCLIP2Config(values["text_config"], values["vision_config"], keep_len=keep_len,
                         longtext_len=4 * length - 3 * keep_len)


def init_from_siglip2(name_or_path, keep_len: int = 20, dtype=None):
    """An :class:`FGCLIP2Model` initialised from a transformers SigLIP 2 checkpoint folder or hub id."""
    folder = resolve_checkpoint(name_or_path)
    values = read_json_file(folder / "config.json", str(folder / "config.json"), CheckpointError)
    if not isinstance(values, dict) or values.get("model_type") != "siglip2":
        raise CheckpointError(f"{folder} has model_type {values.get('model_type')!r}, expected a SigLIP 2 ('siglip2') checkpoint")
    config = fgclip2_config_from_siglip2(values, keep_len)
    state = read_state_dict(folder)
    model = FGCLIP2Model(config)
    state = dict(state)
    source_pos = state["text_model.embeddings.position_embedding.weight"]
    stretched = stretch_position_embedding(source_pos.float(), keep_len).to(source_pos.dtype)
    state["text_model.embeddings.position_embedding_ori.weight"] = stretched
    state["text_model.embeddings.position_embedding_res.weight"] = stretched.clone()
    for head in ("longtext_head", "boxtext_head"):
        for part in ("weight", "bias"):
            state[f"{head}.{part}"] = state[f"text_model.head.{part}"].clone()
    for key in list(state):
        if key.startswith("vision_model.head."):
            state["dense_feature_head." + key[len("vision_model.head."):]] = state[key].clone()
    model.load_state_dict(check_state_dict(model, state, str(folder)))
    if dtype is not None:
        model = model.to(dtype)
    return model
