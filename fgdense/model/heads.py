"""The two heads on the vision tower's last hidden state, run with the model's own masks.

Both are ``Siglip2MultiheadAttentionPoolingHead`` modules (``nn.MultiheadAttention`` + LayerNorm + MLP
with a residual), used for their weights; how they are called is written here, so no transformers
release decides how a padding mask reaches them (see :mod:`.attention_masks`).

- :func:`pooling_head_forward`: SigLIP 2's pooling head, one learned probe attending to the real patches:
  the global image embedding.
- :func:`dense_head_forward`: FG-CLIP 2's dense-feature head, the same structure with every patch token
  as a query. The official code runs ``nn.MultiheadAttention`` with an explicit (batch*heads, N, N)
  additive mask, O(N^2) memory: 12 GiB at 16384 patches for one image. Here it goes through
  ``scaled_dot_product_attention`` with the head's own weights and at most a (B, 1, 1, N) key mask, so
  the fused flash / memory-efficient kernels can run. The official formulation it is tested and timed
  against lives outside the package, in ``benchmarks/reference.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention_masks import key_padding_mask, real_tokens


def pooling_head_forward(head: nn.Module, hidden: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The pooled embedding (B, D) of the last hidden state (B, N, D); ``valid`` an optional (B, N) mask
    of real (non-padding) patches, which are the only keys the probe sees."""
    probe = head.probe.expand(hidden.shape[0], -1, -1)
    out = head.attention(probe, hidden, hidden, key_padding_mask=key_padding_mask(valid), need_weights=False)[0]
    out = out + head.mlp(head.layernorm(out))
    return out[:, 0]


def dense_head_forward(head: nn.Module, hidden: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Dense features (B, N, D) from the vision tower's last hidden state (B, N, D).

    ``valid`` is an optional (B, N) mask of real (non-padding) patches. Padding rows are computed too (as
    the official code does) but no real patch attends to them.
    """
    attn: nn.MultiheadAttention = head.attention
    batch, length, dim = hidden.shape
    heads = attn.num_heads
    q, k, v = F.linear(hidden, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.view(batch, length, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
    valid = real_tokens(valid)
    # Broadcast over heads and queries: never an (N, N) tensor.
    mask = None if valid is None else valid[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = attn.out_proj(out.transpose(1, 2).reshape(batch, length, dim))
    return out + head.mlp(head.layernorm(out))
