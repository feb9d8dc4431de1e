"""Dense supervision from masks: every patch of the dense map is trained against the batch's box texts.

The stage-2 box objectives train RoIAlign *averages* of the dense features, so a box's average can be
right while the patches inside it are not (an average carries the object and the background around it).
Segmentation reads patches one by one, so here each patch gets its own target from the masks:

* a patch mostly inside one box's mask (``inside``: at least half its area) should match that box's text
  and the texts of every other box of the same category (equal keys), and no other text of the batch;
* a patch (almost) outside every mask (``outside``: under 5 % of its area under a mask) is background and
  should match none of them: it competes against an explicit background logit, a learnt cosine;
* patches on mask edges, padding, and the unmasked part of images whose masks are not all known
  (annotations skipped, boxes left out by ``max_boxes`` or a crop) are not scored.

The loss is a softmax cross-entropy per patch over (batch texts + background) with several positives
allowed (the log of the summed probability of the positives), averaged over object patches and over
background patches separately and then the two averages weighed equally, so the 70-80 % of patches
that are background do not swamp the objects.

Two alternatives measured against it (docs/quality.md; off by default): ``patch_region``, each object
patch pulled toward its box's RoIAlign embedding, and ``sub_box``, RoIAlign of 3x3-patch boxes around
object patches scored like the patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BACKGROUND = -1  # target of a patch outside every mask
IGNORED = -2  # target of a patch not scored


def patch_targets(box_masks: torch.Tensor, usable: torch.Tensor, background_known: torch.Tensor,
                  spatial_shapes: torch.Tensor, length: int, inside: float = 0.5,
                  outside: float = 0.05) -> torch.Tensor:
    """(B, length) targets of the padded patch sequence: the index of a box among the ``usable`` ones
    (in batch order, as ``boxes[usable]`` lists them), :data:`BACKGROUND` or :data:`IGNORED`.

    ``box_masks`` (B, M, h, w) is each box's mask as area fractions on the patch grid, ``usable`` (B, M)
    the real boxes that have a mask, ``background_known`` (B,) the images whose every object is among them.
    """
    batch, most = box_masks.shape[:2]
    targets = torch.full((batch, length), IGNORED, dtype=torch.long, device=box_masks.device)
    first = torch.cumsum(usable.sum(1), 0) - usable.sum(1)  # index of each image's first usable box
    for i in range(batch):
        h, w = (int(v) for v in spatial_shapes[i])
        cover = box_masks[i, :, :h, :w].reshape(most, h * w) * usable[i, :, None]
        best, which = cover.max(0)
        # which indexes all M boxes; the usable ones before it give its place among the usable ones.
        rank = torch.cumsum(usable[i].long(), 0) - 1
        own = torch.full((h * w,), IGNORED, dtype=torch.long, device=box_masks.device)
        own[best >= inside] = first[i] + rank[which[best >= inside]]
        if bool(background_known[i]):
            own[cover.sum(0) <= outside] = BACKGROUND
        targets[i, : h * w] = own
    return targets


def patch_text_loss(dense: torch.Tensor, targets: torch.Tensor, texts: torch.Tensor, keys: torch.Tensor | None,
                    log_scale: torch.Tensor, background_cosine: torch.Tensor) -> torch.Tensor:
    """Per-patch softmax over the usable boxes' ``texts`` (V, D, normalised) plus background.

    ``dense`` (B, N, D) features, ``targets`` from :func:`patch_targets`; ``keys`` (V,) say which texts
    name the same thing (None: each text only itself). ``log_scale`` is the log of the logit scale and
    ``background_cosine`` the cosine the background logit stands for.
    """
    scored = targets != IGNORED
    if not bool(scored.any()) or texts.shape[0] == 0:
        return dense.sum() * 0.0
    feats = F.normalize(dense[scored].float(), dim=-1)
    target = targets[scored]
    scale = log_scale.exp()
    logits = torch.cat([scale * feats @ texts.T, (scale * background_cosine).expand(feats.shape[0], 1)], dim=1)
    ids = torch.arange(texts.shape[0], device=texts.device) if keys is None else keys
    positive = torch.zeros_like(logits, dtype=torch.bool)
    is_object = target >= 0
    positive[is_object, :-1] = ids[target[is_object]][:, None] == ids[None, :]
    positive[~is_object, -1] = True
    per_patch = torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~positive, float("-inf")), 1)
    parts = [per_patch[group].mean() for group in (is_object, ~is_object) if bool(group.any())]
    return sum(parts) / len(parts)





def patch_losses(stage2, dense: torch.Tensor, batch: dict, valid: torch.Tensor, texts: torch.Tensor,
                 keys: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The weighted ``dense`` and ``patch_region`` losses of a batch with masks (``texts`` and ``keys``:
    those of the valid boxes, in batch order), for :class:`~fgdense.train.model.FGCLIP2Stage2`."""
    weights, out = stage2.weights, {}
    has = batch["box_has_mask"][valid]
    usable = valid.clone()
    usable[valid] = has
    known = batch.get("background_known", torch.zeros(len(usable), dtype=torch.bool, device=usable.device))
    targets = patch_targets(batch["box_masks"], usable, known, batch["spatial_shapes"], dense.shape[1])
    if weights["dense"]:
        out["loss_dense"] = weights["dense"] * patch_text_loss(
            dense, targets, texts[has], None if keys is None else keys[has], stage2.logit_scale_dense,
            stage2.background_cosine)
    if weights["sub_box"]:
        feats, target = _sub_boxes(dense, targets, batch["spatial_shapes"])
        out["loss_sub_box"] = weights["sub_box"] * patch_text_loss(
            feats[None], target[None], texts[has], None if keys is None else keys[has], stage2.logit_scale_dense,
            stage2.background_cosine)
    if weights["patch_region"]:
        # The box's RoIAlign embedding, held still, is what each of its patches is pulled toward.
        with torch.no_grad():
            regions = stage2._regions(dense, batch["spatial_shapes"], batch["boxes"], batch["box_counts"])[has]
        inside = targets >= 0
        if bool(inside.any()):
            feats = F.normalize(dense[inside].float(), dim=-1)
            cosine = (feats * regions[targets[inside]]).sum(-1)
            out["loss_patch_region"] = weights["patch_region"] * (1 - cosine).mean()
        else:
            out["loss_patch_region"] = dense.sum() * 0.0
    return out

def _sub_boxes(dense: torch.Tensor, targets: torch.Tensor, spatial_shapes: torch.Tensor, per_image: int = 16):
    """RoIAlign embeddings of 3x3-cell boxes centred on up to ``per_image`` random object cells of each
    image, and the targets of their centres: small regions inside masks, between a patch and a box."""
    from ..model.boxes import roi_embeddings
    from ..model.modeling import grid_of

    feats, chosen = [], []
    for i in range(len(dense)):
        h, w = (int(v) for v in spatial_shapes[i])
        cells = torch.nonzero(targets[i, : h * w] >= 0).flatten()
        if not len(cells):
            continue
        cells = cells[torch.randperm(len(cells), device=cells.device)[:per_image]]
        rows, cols = (cells // w).float(), (cells % w).float()
        boxes = torch.stack([(cols - 1).clamp(min=0), (rows - 1).clamp(min=0), (cols + 2).clamp(max=w),
                             (rows + 2).clamp(max=h)], dim=1)
        feats.append(roi_embeddings(grid_of(dense[i], spatial_shapes[i]), boxes))
        chosen.append(targets[i, cells])
    if not feats:
        return dense.new_zeros(0, dense.shape[-1]), targets.new_zeros(0)
    return torch.cat(feats), torch.cat(chosen)


__all__ = ["BACKGROUND", "IGNORED", "patch_losses", "patch_targets", "patch_text_loss"]
