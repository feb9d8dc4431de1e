"""The padding masks the model hands to each attention it runs, built here for each consumer.

Which tokens are real is one (B, N) mask (1 = real token, 0 = padding). Transformers' SigLIP 2 encoder
layers and ``nn.MultiheadAttention`` want it in different forms, and how a transformers release turns
one form into another has changed between releases (5.25's pooling head passes whatever it is given to
``nn.MultiheadAttention`` as ``key_padding_mask``). So the model never hands a mask to transformers'
glue to convert: it calls the encoder layers and the heads itself, each with the form it takes.

Neither form is ever an (N, N) square: at 16384 patches that would be 1 GiB per image and head as
booleans, 4 GiB as float32 (what the official code built).
"""

from __future__ import annotations

import torch


def real_tokens(valid: torch.Tensor | None) -> torch.Tensor | None:
    """The (B, N) mask as booleans, or None where nothing is padding (attention then runs unmasked,
    which gives the same numbers and lets the fused kernels run)."""
    if valid is None:
        return None
    if valid.dim() != 2:
        raise ValueError(f"expected a (batch, tokens) padding mask, got shape {tuple(valid.shape)}")
    valid = valid.to(torch.bool)
    return None if bool(valid.all()) else valid


def encoder_key_mask(valid: torch.Tensor | None, attn_implementation: str, dtype: torch.dtype) -> torch.Tensor | None:
    """The mask for transformers' attention functions (the encoder layers): (B, 1, 1, N), broadcast over
    heads and queries, hiding padding keys from every query.

    ``sdpa`` takes booleans (True = attend); ``eager`` adds the mask to the scores, so it gets 0 for real
    keys and the dtype's minimum for padding.
    """
    valid = real_tokens(valid)
    if valid is None:
        return None
    keep = valid[:, None, None, :]
    if attn_implementation == "sdpa":
        return keep
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def key_padding_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """The (B, N) mask for ``nn.MultiheadAttention``'s ``key_padding_mask``: True where a key is padding."""
    valid = real_tokens(valid)
    return None if valid is None else ~valid
