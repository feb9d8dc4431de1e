"""The mmengine model for stage-2 training: an FG-CLIP 2 network plus the stage-2 objectives.

``FGCLIP2Stage2`` owns an :class:`~fgdense.model.FGCLIP2Model` (``.model``), the two learnable
region / hard-negative logit scales (log values, initialised at log 100 as the official recipe) and
the hard-negative threshold (a buffer, so it is checkpointed and resumed). Its ``forward(mode="loss")``
takes a batch of :class:`~fgdense.train.data.FineHARDCollator` and returns the weighted losses.

Besides the four official objectives (global SigLIP on long and short captions, region-text
contrastive, text intra-modal, hard negatives) there are optional ones, off by default: ``mask``
(mask-pooled region embeddings against their texts, for data with masks), ``dense`` (every patch against
the batch's box texts and an explicit background, from the masks: :mod:`.dense_supervision`),
``patch_region`` (each patch inside a mask pulled toward its box's region embedding), ``sub_box``
(RoIAlign of 3x3-patch boxes inside masks against their box's text) and
``distill_global`` / ``distill_dense`` (cosine distance of the global and dense image features to those
of the frozen starting network, to keep what it knew).
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from ..bulk.distributed import active
from ..model.boxes import roi_embeddings
from ..model.modeling import FGCLIP2Model, grid_of
from .dense_supervision import patch_losses
from .losses import hard_negative_loss, region_contrastive_loss, siglip_loss, sync_threshold, text_intra_modal_loss

# Objective weights of the official stage-2 recipe, then the optional objectives (off); 0 switches
# an objective off.
DEFAULT_WEIGHTS = dict(long=1.0, short=1.0, region=0.2, text_intra=0.1, hard=0.5, mask=0.0, dense=0.0,
                       patch_region=0.0, sub_box=0.0, distill_global=0.0, distill_dense=0.0)
# Texts of a frozen text side are encoded once and remembered, up to this many.
TEXT_CACHE_SIZE = 16384


def build_network(checkpoint: str, init_from: str = "fgclip2") -> FGCLIP2Model:
    """An FG-CLIP 2 network from an FG-CLIP 2 checkpoint or (``init_from="siglip2"``) a SigLIP 2 one."""
    if init_from == "fgclip2":
        return FGCLIP2Model.from_pretrained(checkpoint).train()
    if init_from == "siglip2":
        from ..model.siglip2_init import init_from_siglip2

        return init_from_siglip2(checkpoint).train()
    raise ValueError(f"init_from must be 'fgclip2' or 'siglip2', got {init_from!r}")


class FGCLIP2Stage2(BaseModel):
    """Stage-2 region fine-tuning of FG-CLIP 2 (see the module docstring).

    ``loss_weights`` overrides :data:`DEFAULT_WEIGHTS` (a weight of 0 turns that objective off);
    ``frozen`` lists parameter-name prefixes of the network to freeze (e.g. ``"text_model."``);
    ``gradient_checkpointing`` recomputes the vision and text encoder layers in the backward pass.
    When the text tower and a walk's head are all frozen, that walk's text embeddings are computed
    once per distinct text and remembered (they cannot change).
    """

    def __init__(self, checkpoint: str | None = None, init_from: str = "fgclip2", loss_weights: dict | None = None,
                 logit_scale_init: float = math.log(100.0), gradient_checkpointing: bool = False,
                 frozen: tuple[str, ...] | list[str] = (), text_intra_topk: int = 10,
                 text_intra_same_threshold: float = 0.95, network: FGCLIP2Model | None = None,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if (checkpoint is None) == (network is None):
            raise ValueError("give either a checkpoint to start from or a built network, not both")
        # ``network``: an already built FGCLIP2Model (benchmarks use randomly initialised ones).
        self.model = network.train() if network is not None else build_network(checkpoint, init_from)
        unknown = set(loss_weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
        self.weights = {**DEFAULT_WEIGHTS, **(loss_weights or {})}
        self.logit_scale_finegraind = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.logit_scale_hardneg = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.register_buffer("hard_threshold", torch.zeros(()))
        # The dense objective's own scale and the cosine its background logit stands for (learnt).
        self.logit_scale_dense = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.background_cosine = nn.Parameter(torch.tensor(0.0))
        self.text_intra_topk = text_intra_topk
        self.text_intra_same_threshold = text_intra_same_threshold
        self.skipped_per_epoch: dict[int, int] = defaultdict(int)
        self.used_per_epoch: dict[int, int] = defaultdict(int)
        self.last_stats: dict[str, float] = {}
        self._freeze(frozen)
        heads = {"short": (), "box": ("boxtext_head",), "long": ("longtext_head",)}
        tower_frozen = not any(p.requires_grad for p in self.model.text_model.parameters())
        self._tower_frozen = tower_frozen
        self._text_frozen = {walk: tower_frozen and not any(p.requires_grad for name in parts
                                                             for p in getattr(self.model, name).parameters())
                             for walk, parts in heads.items()}
        self._text_cache: dict = {}
        self.register_load_state_dict_pre_hook(lambda *args, **kwargs: self._text_cache.clear())
        # The frozen starting network for distillation: not a submodule, so it is neither trained nor
        # saved in checkpoints (a resumed run rebuilds it from the same start).
        self._teacher = []
        if self.weights["distill_global"] or self.weights["distill_dense"]:
            self._teacher = [copy.deepcopy(self.model).eval().requires_grad_(False)]
        if gradient_checkpointing:
            enable_gradient_checkpointing(self.model)

    def _freeze(self, prefixes) -> None:
        names = [name for name, _ in self.model.named_parameters()]
        for prefix in prefixes:
            if not any(name.startswith(prefix) for name in names):
                raise ValueError(f"frozen prefix {prefix!r} matches no parameter of the model")
        for name, param in self.model.named_parameters():
            if any(name.startswith(prefix) for prefix in prefixes):
                param.requires_grad_(False)

    # ------------------------------------------------------------------ forward
    def forward(self, mode: str = "loss", **batch):
        if mode != "loss":
            raise ValueError(f"FGCLIP2Stage2 only trains (mode='loss'); got mode={mode!r}")
        epoch = batch.get("epoch")
        if epoch is not None:
            self.skipped_per_epoch[int(epoch)] += int(batch.get("skipped", 0))
            self.used_per_epoch[int(epoch)] += int(batch.get("size") or 0)
        if not batch.get("size"):
            return self._empty_batch_losses()
        return self.losses(batch)

    def text_features(self, ids: torch.Tensor, walk: str, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised (N, D) fp32 text embeddings of token ids, with the attention ``mask`` when the batch
        has one (the collator's ``text_mask``; input ids only, as the official training, by default).

        What cannot change is computed once per distinct text and remembered: the whole embedding when
        the tower and the walk's head are frozen; the tower's output when only the head trains."""
        if self._text_frozen[walk]:
            return self._remembered(walk, ids, mask, lambda i, m: F.normalize(
                self.model.get_text_features(i, attention_mask=m, walk_type=walk).float(), dim=-1))
        if self._tower_frozen:
            pooled = self._remembered(("tower", walk), ids, mask,
                                      lambda i, m: self.model.text_model(i, attention_mask=m, walk_type=walk))
            head = {"box": self.model.boxtext_head, "long": self.model.longtext_head}[walk]
            return F.normalize(head(pooled).float(), dim=-1)
        return F.normalize(self.model.get_text_features(ids, attention_mask=mask, walk_type=walk).float(), dim=-1)

    def _remembered(self, kind, ids: torch.Tensor, mask: torch.Tensor | None, compute) -> torch.Tensor:
        """``compute(ids, mask)`` row by row, each distinct (ids, mask) row computed once, without gradients."""
        rows = [(kind, bytes(row)) for row in ids.cpu().numpy()]
        if mask is not None:
            rows = [(kind, ids_key, bytes(row)) for (_, ids_key), row in zip(rows, mask.cpu().numpy())]
        missing = list(dict.fromkeys(r for r in rows if r not in self._text_cache))
        if missing:
            if len(self._text_cache) + len(missing) > TEXT_CACHE_SIZE:
                self._text_cache.clear()
            where = {r: i for i, r in enumerate(rows)}
            chosen = [where[r] for r in missing]
            with torch.no_grad():
                new = compute(ids[chosen], None if mask is None else mask[chosen])
            for r, feature in zip(missing, new):
                self._text_cache[r] = feature
        return torch.stack([self._text_cache[r] for r in rows])

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        net, w = self.model, self.weights
        vision = net.vision_outputs(batch["pixel_values"], batch["pixel_attention_mask"], batch["spatial_shapes"])
        image = F.normalize(vision.pooler_output.float(), dim=-1)
        out: dict[str, torch.Tensor] = {}
        stats = {"images": int(image.shape[0])}
        for walk in ("long", "short"):
            if w[walk]:
                text = self.text_features(batch[f"{walk}_ids"], walk, batch.get(f"{walk}_mask"))
                out[f"loss_{walk}"] = w[walk] * siglip_loss(image, text, net.logit_scale, net.logit_bias, stats=stats,
                                                            keys=batch.get(f"{walk}_keys"))
        self.last_stats = stats
        with_masks = bool(w["mask"] or w["dense"] or w["patch_region"] or w["sub_box"]) and "box_masks" in batch
        need_dense = w["region"] or w["text_intra"] or w["hard"] or with_masks or w["distill_dense"]
        dense = net.dense_features_from_hidden(vision.last_hidden_state, batch["pixel_attention_mask"]) if need_dense else None
        if w["region"] or w["text_intra"] or with_masks:
            valid = _valid(batch["box_counts"], batch["boxes"].shape[1])
            if bool(valid.any()):
                texts = self.text_features(batch["box_ids"][valid], "box",
                                           batch["box_mask"][valid] if "box_mask" in batch else None)
                keys = batch["box_keys"][valid] if "box_keys" in batch else None
                if w["region"]:
                    regions = self._regions(dense, batch["spatial_shapes"], batch["boxes"], batch["box_counts"])
                    out["loss_region"] = w["region"] * region_contrastive_loss(regions, texts, self.logit_scale_finegraind,
                                                                               keys)
                if w["text_intra"]:
                    out["loss_text_intra"] = w["text_intra"] * text_intra_modal_loss(
                        texts, self.text_intra_topk, self.text_intra_same_threshold)
                if with_masks and (w["dense"] or w["patch_region"] or w["sub_box"]):
                    out.update(patch_losses(self, dense, batch, valid, texts, keys))
                if with_masks and w["mask"]:
                    has = batch["box_has_mask"][valid]
                    if bool(has.any()):
                        pooled = self._mask_pooled(dense, batch["spatial_shapes"], batch["box_masks"])[valid][has]
                        out["loss_mask"] = w["mask"] * region_contrastive_loss(
                            pooled, texts[has], self.logit_scale_finegraind, None if keys is None else keys[has])
        if w["hard"]:
            out.update(self._hard_negative(dense, batch))
        if w["distill_global"] or w["distill_dense"]:
            out.update(self._distill(batch, image, dense))
        return out

    def _distill(self, batch, image, dense) -> dict[str, torch.Tensor]:
        """Cosine distances of the global and dense features to the frozen starting network's."""
        teacher = self._teacher[0]
        if teacher.device != image.device:
            teacher.to(image.device)
        out = {}
        with torch.no_grad():
            reference = teacher.vision_outputs(batch["pixel_values"], batch["pixel_attention_mask"],
                                               batch["spatial_shapes"])
        if self.weights["distill_global"]:
            target = F.normalize(reference.pooler_output.float(), dim=-1)
            out["loss_distill_global"] = self.weights["distill_global"] * (1 - (image * target).sum(-1)).mean()
        if self.weights["distill_dense"]:
            with torch.no_grad():
                target = teacher.dense_features_from_hidden(reference.last_hidden_state, batch["pixel_attention_mask"])
            mask = batch["pixel_attention_mask"].to(torch.bool)
            cosine = F.cosine_similarity(dense.float(), target.float(), dim=-1)
            out["loss_distill_dense"] = self.weights["distill_dense"] * (1 - cosine[mask]).mean()
        return out

    def _hard_negative(self, dense, batch) -> dict[str, torch.Tensor]:
        regions = self._regions(dense, batch["spatial_shapes"], batch["hard_boxes"], batch["hard_counts"])
        threshold = self.hard_threshold
        out = {}
        if len(regions):
            valid = _valid(batch["hard_counts"], batch["hard_boxes"].shape[1])
            ids = batch["hard_ids"][valid]  # (H, 1+K, L)
            mask = batch["hard_mask"][valid].flatten(0, 1) if "hard_mask" in batch else None
            texts = self.text_features(ids.flatten(0, 1), "box", mask).reshape(ids.shape[0], ids.shape[1], -1)
            keys = batch["hard_keys"][valid] if "hard_keys" in batch else None
            loss, threshold = hard_negative_loss(regions, texts, self.hard_threshold, self.logit_scale_hardneg, keys)
            out["loss_hard"] = self.weights["hard"] * loss
        self.last_stats["local_hard_threshold"] = float(threshold)
        # Every process takes part, with or without hard boxes, so the collective never hangs.
        with torch.no_grad():
            self.hard_threshold.copy_(sync_threshold(threshold).to(self.hard_threshold.device))
        out["hard_threshold"] = self.hard_threshold.detach().clone()
        return out

    def _regions(self, dense, spatial_shapes, boxes, counts) -> torch.Tensor:
        """Normalised RoIAlign embeddings of every valid box, image by image, in batch order."""
        parts = []
        for i, n in enumerate(counts.tolist()):
            if n == 0:
                continue
            h, w = (int(v) for v in spatial_shapes[i])
            # Normalised xyxy -> patch-grid units, as the official _denormalize_boxes.
            scale = torch.tensor([w, h, w, h], dtype=torch.float64, device=boxes.device)
            parts.append(roi_embeddings(grid_of(dense[i], spatial_shapes[i]), boxes[i, :n].double() * scale))
        if not parts:
            return dense.new_zeros(0, dense.shape[-1])
        return F.normalize(torch.cat(parts).float(), dim=-1)

    @staticmethod
    def _mask_pooled(dense, spatial_shapes, masks) -> torch.Tensor:
        """(B, M, D) normalised averages of the dense features under each box's grid mask."""
        batch, most = masks.shape[:2]
        weights = dense.new_zeros(batch, most, dense.shape[1], dtype=torch.float32)
        for i in range(batch):
            h, w = (int(v) for v in spatial_shapes[i])
            weights[i, :, : h * w] = masks[i, :, :h, :w].reshape(most, h * w)
        pooled = torch.einsum("bmn,bnd->bmd", weights, dense.float()) / weights.sum(-1, keepdim=True).clamp(min=1e-6)
        return F.normalize(pooled, dim=-1)

    def _empty_batch_losses(self) -> dict[str, torch.Tensor]:
        """A batch whose images were all unreadable: zero loss, but the collectives still run."""
        zero = sum(p.sum() * 0 for p in self.parameters() if p.requires_grad)
        out = {"loss_empty": zero}
        if active():
            dim = self.model.config.text_config.hidden_size
            # requires_grad: the gather's backward holds a collective the other ranks join; without
            # a graph here this rank would skip it and the ranks' collectives would fall out of step.
            empty = self.model.logit_scale.new_zeros(0, dim, requires_grad=True)
            for walk in ("long", "short"):
                if self.weights[walk]:
                    out["loss_empty"] = out["loss_empty"] + siglip_loss(empty, empty, self.model.logit_scale,
                                                                        self.model.logit_bias)
        if self.weights["hard"]:
            with torch.no_grad():
                self.hard_threshold.copy_(sync_threshold(self.hard_threshold).to(self.hard_threshold.device))
        return out


def _valid(counts: torch.Tensor, most: int) -> torch.Tensor:
    """(B, most) mask of the real (non-padding) boxes."""
    return torch.arange(most, device=counts.device)[None, :] < counts[:, None]


def enable_gradient_checkpointing(model: FGCLIP2Model) -> None:
    """Recompute the SigLIP 2 encoder layers in the backward pass (vision and text towers).

    Both towers are transformers ``PreTrainedModel`` s; non-reentrant checkpointing works with frozen
    inputs and with several forward passes of the text tower per step.
    """
    for tower in (model.vision_model, model.text_model):
        if hasattr(tower, "activation_checkpointing_enable"):  # transformers >= 5.x name
            tower.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
