"""The dense-feature head: every patch token attends to all patches of its image.

FG-CLIP 2 reuses the structure of the attention-pooling head (``Siglip2MultiheadAttentionPoolingHead``:
``nn.MultiheadAttention`` + LayerNorm + MLP with a residual) but uses every patch token as a query
instead of the single learned probe. The official code runs ``nn.MultiheadAttention`` with an explicit
(batch*heads, N, N) additive mask, which is O(N^2) memory: 12 GiB at 16384 patches for one image.

:func:`dense_head_forward` computes the same function through ``scaled_dot_product_attention`` with
the head's own weights and at most a (B, 1, 1, N) key-padding mask, so the fused flash /
memory-efficient kernels can run. The official formulation it is tested and timed against lives
outside the package, in ``benchmarks/reference.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dense_head_forward(head: nn.Module, hidden: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Dense features (B, N, D) from the vision tower's last hidden state (B, N, D).

    ``head`` is a ``Siglip2MultiheadAttentionPoolingHead``; ``valid`` an optional (B, N) mask of real
    (non-padding) patches. Padding rows are computed too (as the official code does) but no real
    patch attends to them.
    """
    attn: nn.MultiheadAttention = head.attention
    batch, length, dim = hidden.shape
    heads = attn.num_heads
    q, k, v = F.linear(hidden, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.view(batch, length, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
    mask = None
    if valid is not None and not bool(valid.all()):
        # Broadcast over heads and queries: never an (N, N) tensor.
        mask = valid.to(torch.bool)[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = attn.out_proj(out.transpose(1, 2).reshape(batch, length, dim))
    return out + head.mlp(head.layernorm(out))
