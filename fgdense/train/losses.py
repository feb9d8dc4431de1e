"""FG-CLIP 2 stage-2 objectives as plain functions on L2-normalised embeddings.

Every ``logit_scale`` is the LOG of the temperature (the model stores it that way and exponentiates).
Definitions follow the official training code; ``tests/fixtures/fgclip2-reference`` (case ``losses``)
holds reference values. Under ``torch.distributed`` the SigLIP loss also scores the local images
against every other process's texts (negatives only, gradients flowing back to those processes), and
the hard-negative threshold is synchronised with :func:`sync_threshold`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import distributed as dist

THRESHOLD_RANGE = (0.0, 10.0)
# Weights of the three parts of the hard-negative objective (the official values).
HARD_CONTRASTIVE_WEIGHT, HARD_PER_REGION_WEIGHT, HARD_RANK_WEIGHT = 0.6, 3.0, 0.4


def _sigmoid_loss(image, text, scale, bias, negative_only: bool, positive=None) -> torch.Tensor:
    """``positive`` (optional boolean (B_image, B_text)): the pairs labelled +1 instead of the diagonal."""
    logits = scale * image @ text.t() + bias
    if positive is not None:
        labels = 2 * positive.to(logits.dtype) - 1
    else:
        labels = -torch.ones_like(logits)
        if not negative_only:
            labels = labels + 2 * torch.eye(*logits.shape, device=logits.device, dtype=logits.dtype)
    return -F.logsigmoid((labels * logits).float()).sum() / max(image.shape[0], 1)


def siglip_loss(image, text, logit_scale, logit_bias, distributed: bool | None = None,
                stats: dict | None = None, keys=None) -> torch.Tensor:
    """Pairwise sigmoid loss: ``-sum(logsigmoid(labels * (exp(s) I T^T + b))) / B``, +1 on the diagonal.

    With ``distributed`` (default: whenever torch.distributed is initialised with several processes)
    the images are also scored against every other process's texts, all as negatives. ``stats``, if
    given, receives ``texts_from_other_ranks``: how many such negative texts were scored.

    ``keys`` (B,) non-negative integers, optional: image-text pairs are the same caption when their
    keys are equal (two images whose captions are identical), and such pairs are labelled +1, here
    and across processes, instead of being pushed apart. Without keys this is the official loss.
    """
    scale = torch.as_tensor(logit_scale, device=image.device).exp()
    bias = torch.as_tensor(logit_bias, device=image.device)
    own = None if keys is None else keys[:, None] == keys[None, :]
    loss = _sigmoid_loss(image, text, scale, bias, negative_only=False, positive=own)
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if distributed:
        rank, others = dist.get_rank(), 0
        if keys is None:  # distinct negative keys: equal to nothing on any process
            keys = -1 - torch.arange(image.shape[0], device=image.device) - rank * (1 << 40)
        all_keys = gather_rows(keys.to(torch.long).reshape(-1, 1))
        for other, texts in enumerate(gather_with_grad(text)):
            if other != rank:
                positive = keys.reshape(-1, 1) == all_keys[other].reshape(1, -1).to(keys.device)
                loss = loss + _sigmoid_loss(image, texts, scale, bias, negative_only=True,
                                            positive=positive if bool(positive.any()) else None)
                others += texts.shape[0]
        if stats is not None:
            stats["texts_from_other_ranks"] = others
    return loss


def gather_rows(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``tensor`` (rows may differ in number), without gradients."""
    world = dist.get_world_size()
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    padded = F.pad(tensor, (0, 0, 0, max(counts) - tensor.shape[0])).contiguous()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [part[:n] for part, n in zip(parts, counts)]


class _AllGather(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for this process's part."""

    @staticmethod
    def forward(ctx, tensor):
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads):
        grad = torch.stack(grads)
        dist.all_reduce(grad)  # each process used every part; the owner gets the sum
        return grad[dist.get_rank()]


def gather_with_grad(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``tensor`` (rows may differ in number), gradients flowing back to their owners."""
    world = dist.get_world_size()
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    # all_gather needs equal shapes: pad to the largest batch, then cut each part back.
    padded = F.pad(tensor, (0, 0, 0, max(counts) - tensor.shape[0]))
    parts = _AllGather.apply(padded.contiguous())
    return [part[:n] for part, n in zip(parts, counts)]


def multi_positive_cross_entropy(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-log(sum of softmax(row) over the row's positive columns)``.

    With exactly one positive per row this is the ordinary cross-entropy. Rows without a positive
    are left out.
    """
    logits = logits.float()
    has = positive.any(dim=1)
    if not bool(has.any()):
        return logits.sum() * 0
    logits, positive = logits[has], positive[has]
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)).mean()


def region_contrastive_loss(region, text, logit_scale, keys=None) -> torch.Tensor:
    """Symmetric cross-entropy of ``exp(s) R T^T`` against the identity (region i matches text i).

    ``keys`` (one integer per pair, optional): pairs with equal keys name the same thing (two boxes of
    one category, two identical captions), so each is a positive of the other rather than a negative.
    Without keys, or with all keys distinct, this is the official loss.
    """
    logits = torch.as_tensor(logit_scale, device=region.device).exp() * region @ text.t()
    if keys is None:
        labels = torch.arange(region.shape[0], device=region.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    same = keys[:, None] == keys[None, :]
    return (multi_positive_cross_entropy(logits, same) + multi_positive_cross_entropy(logits.t(), same)) / 2


def text_intra_modal_loss(text, topk: int = 10, same_threshold: float = 0.95) -> torch.Tensor:
    """Push texts apart: ``mean(log(sum(exp(top-k similarities))))`` per row.

    Self-similarity and near-duplicates (similarity above ``same_threshold``) are zeroed first, so
    texts that say the same thing are not pushed apart.
    """
    similarity = text @ text.t()
    similarity = similarity * (1 - torch.eye(len(text), device=text.device, dtype=similarity.dtype))
    similarity = torch.where(similarity > same_threshold, torch.zeros_like(similarity), similarity)
    values = similarity.topk(min(topk, similarity.shape[1]), dim=1).values
    return torch.logsumexp(values, dim=1).mean()


def hard_negative_loss(region, texts, threshold, logit_scale, keys=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard-negative objective for B regions with texts (B, 1+K, D), the positive first.

    Returns ``(loss, new_threshold)``. The loss is 0.6 x the symmetric region-text contrastive loss
    (regions against all positives and negatives; positives against regions) + 3 x each region's
    cross-entropy over its own 1+K captions + 0.4 x the cross-modal rank loss
    ``mean(relu(threshold + neg - pos))``. ``new_threshold = mean(pos) - mean(nonzero neg)`` (a
    detached scalar), to be averaged over processes and clamped (:func:`sync_threshold`).

    ``keys`` (B, 1+K) integers, optional: texts with equal keys name the same thing. In the
    contrastive part a region's positives are then every text with its positive's key (another box's
    caption of the same category, or another box's negative that happens to be this box's positive),
    and a positive text's positives every region of its key. Without keys, or with all keys
    distinct, this is the official loss.
    """
    batch, choices, dim = texts.shape
    scale = torch.as_tensor(logit_scale, device=region.device).exp()
    positives, negatives = texts[:, 0], texts[:, 1:]
    all_texts = torch.cat([positives, negatives.reshape(-1, dim)])
    labels = torch.arange(batch, device=region.device)
    per_region = scale * region @ all_texts.t()
    per_text = scale * positives @ region.t()
    if keys is None:
        contrastive = (F.cross_entropy(per_region, labels) + F.cross_entropy(per_text, labels)) / 2
    else:
        own_key = keys[:, 0]
        column_keys = torch.cat([own_key, keys[:, 1:].reshape(-1)])
        contrastive = (multi_positive_cross_entropy(per_region, own_key[:, None] == column_keys[None, :])
                       + multi_positive_cross_entropy(per_text, own_key[:, None] == own_key[None, :])) / 2

    own = scale * torch.einsum("bd,bkd->bk", region, texts)  # (B, 1+K) each region vs its own captions
    own_choice = F.cross_entropy(own, torch.zeros(batch, dtype=torch.long, device=region.device))

    positive_logit, negative_logit = own[:, :1], own[:, 1:]
    rank = F.relu(torch.as_tensor(threshold, device=region.device) + negative_logit - positive_logit).mean()
    loss = HARD_CONTRASTIVE_WEIGHT * contrastive + HARD_PER_REGION_WEIGHT * own_choice + HARD_RANK_WEIGHT * rank

    with torch.no_grad():
        nonzero = negative_logit != 0
        new_threshold = positive_logit.mean() - (negative_logit * nonzero).sum() / nonzero.sum().clamp(min=1)
    return loss, new_threshold.detach()


def sync_threshold(threshold: torch.Tensor | float, low: float = THRESHOLD_RANGE[0], high: float = THRESHOLD_RANGE[1]) -> torch.Tensor:
    """The threshold averaged over all processes (when distributed) and clamped to [low, high]."""
    value = torch.as_tensor(threshold, dtype=torch.float32).detach().clone().reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        value = value.to(backend_device)
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / dist.get_world_size()
    return value.clamp(low, high).reshape(())
