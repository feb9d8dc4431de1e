"""The official formulations, kept as the reference that fgdense's fast paths are tested and timed against.

One copy serves both the tests (``tests/test_dense.py``, ``tests/test_benchmark_dense.py``,
``tests/test_regions.py``) and the benchmarks. Each function computes what the official FG-CLIP 2 code
computes, the way it computes it, padded masks and repeated encodings included: the point is to
measure that cost and check that the fast paths give the same numbers without it.

- :func:`official_4d_mask`: the (B, 1, N, N) additive mask the official vision tower attended with;
- :func:`dense_head_reference`: the dense head as ``nn.MultiheadAttention`` with a (B*heads, N, N) mask;
- :func:`official_dense_features`: ``get_image_dense_feature`` as the official code ran it;
- :func:`official_region_features_per_box`: the official box-classification evaluation, which processes
  and encodes the whole image again for every box.
"""

from __future__ import annotations

import torch
from torch import nn

from fgdense.model.heads import pooling_head_forward
from fgdense.model.modeling import run_encoder_layers


def official_4d_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, N, N) additive float mask of a (B, N) padding mask: 0 where a key is kept, the dtype's
    minimum where it is padding, repeated for every query.

    The full square is what made the official vision tower O(N^2) in memory (transformers 4.57 built it
    from the 2D mask); fgdense's own key-padding mask is the (B, 1, 1, N) boolean ``keep`` below, never
    expanded.
    """
    batch, length = mask.shape
    keep = mask.to(torch.bool)[:, None, None, :].expand(batch, 1, length, length)
    additive = torch.zeros(keep.shape, dtype=dtype, device=mask.device)
    return additive.masked_fill(~keep, torch.finfo(dtype).min)


def dense_head_reference(head: nn.Module, hidden: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The dense head as the official code runs it: ``nn.MultiheadAttention`` over every patch token with
    the (B, 1, N, N) mask repeated to (B*heads, N, N); then LayerNorm + MLP with a residual.

    ``head`` is the model's ``dense_feature_head``, ``hidden`` the vision tower's last hidden state
    (B, N, D), ``valid`` an optional (B, N) mask of real patches. Returns (B, N, D), padding rows included.
    """
    mask = None
    if valid is not None:
        batch, length = valid.shape
        mask = official_4d_mask(valid, hidden.dtype).repeat(1, head.num_heads, 1, 1).reshape(-1, length, length)
    out = head.attention(hidden, hidden, hidden, attn_mask=mask)[0]
    return out + head.mlp(head.layernorm(out))


@torch.no_grad()
def official_dense_features(model, pixel_values, pixel_attention_mask, spatial_shapes) -> torch.Tensor:
    """FG-CLIP 2's official ``get_image_dense_feature``, computed the way the official code computes it.

    Under transformers 4.57 the vision tower turned the 2D padding mask into a (B, 1, N, N) float mask
    for its SDPA layers (transformers 5 would drop an all-ones mask, so the 4D mask is built here
    explicitly), the pooling head ran too, and the dense head is :func:`dense_head_reference`.
    Returns (B, N, D), padding rows included.
    """
    vision = model.vision_model
    hidden = vision.embeddings(pixel_values.to(model.dtype), spatial_shapes)
    mask_4d = official_4d_mask(pixel_attention_mask, hidden.dtype)
    hidden = vision.post_layernorm(run_encoder_layers(vision.encoder, hidden, mask_4d))
    pooling_head_forward(vision.head, hidden, pixel_attention_mask)  # the official forward pools as well
    return dense_head_reference(model.dense_feature_head, hidden, pixel_attention_mask)


@torch.no_grad()
def official_region_features_per_box(model, processor, image, boxes, **processing) -> torch.Tensor:
    """(N, D) region embeddings, not normalised, as the official box-classification evaluation gets them:
    for every xyxy box, the whole image processed and encoded again, and ``get_image_region_features``
    called with that box alone.

    ``image`` is a PIL image or an (H, W, 3) array; ``processing`` goes to the processor with the image
    (``max_num_patches=..., dynamic_max_patches=False`` for a fixed budget).
    """
    size = (image.height, image.width) if hasattr(image, "height") else tuple(image.shape[:2])
    out = []
    for box in boxes:
        inputs = {name: value.to(model.device) for name, value in processor(image, **processing).items()}
        box = [float(v) for v in box]
        regions = model.get_image_region_features(**inputs, image_sizes=[size], region_infos=[[box]])
        out.append(regions[0][0])
    return torch.stack(out)




# ------------------------------------------------------------------------- official box classification
def official_text_embeddings(model, tokenizer, texts, walk_type: str = "box", lowercase: bool = True) -> torch.Tensor:
    """(N, D) normalised text embeddings as the official demos and evaluation scripts make them: the texts
    (lower-cased, as the demos do) through ``tokenizer(..., padding="max_length", max_length=64 or 196,
    truncation=True)``, and the tokenizer's whole output into ``get_text_features(**inputs, walk_type=...)``:
    the attention mask goes in exactly when the tokenizer returns one."""
    texts = [t.lower() for t in texts] if lowercase else list(texts)
    length = 196 if walk_type == "long" else 64
    inputs = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    with torch.no_grad():
        embeds = model.get_text_features(**inputs, walk_type=walk_type).float()
    return embeds / embeds.norm(dim=-1, keepdim=True)


def official_text_features(model, tokenizer, names, protocol: str, templates=None) -> torch.Tensor:
    """(K, D) category embeddings as the official evaluation scripts compute them.

    ``boxclass-cn`` (``laion_cn_box_cls_ddp.py``): each name as it is (not lower-cased), normalised.
    ``coco`` / ``lvis`` (``coco_box_ddp.py``, ``lvis_box_cls_ddp.py``; LVIS first turns ``_`` into spaces):
    each of the templates filled with the name and lower-cased, embedded, normalised, averaged,
    normalised again.
    """
    from fgdense.evaluation.protocols import imagenet_templates

    rows = []
    for name in names:
        if protocol == "boxclass-cn":
            embeds = official_text_embeddings(model, tokenizer, [name], lowercase=False)
        else:
            name = name.replace("_", " ") if protocol == "lvis" else name
            embeds = official_text_embeddings(model, tokenizer, [t.format(name) for t in (templates or imagenet_templates())])
        mean = embeds.mean(0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


def official_box_classification(model, processor, tokenizer, annotation_file, images_dir, protocol: str) -> dict:
    """The official box-classification evaluation, one annotation at a time: the image opened with
    ``Image.open(...).convert("RGB")``, processed by the checkpoint's default processor, encoded, the box
    (COCO xywh) pooled by RoIAlign 1x1, ``softmax(100 * cos)`` over the categories, top-5.

    Category ids are mapped to their position in the file (the BoxClass-CN / LVIS scripts assume ids
    1..N, which gives the same where that holds). Annotations the official scripts would crash or skip
    on (unknown category, missing image, outside the folder, zero-area box) are left out. Returns
    ``top1``, ``top5`` (fractions) and ``predictions``: annotation id -> (top-5 category ids, cosines).
    """
    import json
    import os
    from pathlib import Path

    from PIL import Image

    data = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
    ids = [c["id"] for c in data["categories"]]
    text = official_text_features(model, tokenizer, [c["name"] for c in data["categories"]], protocol)
    files = {im["id"]: im.get("file_name") or im["coco_url"].split("/")[-1] for im in data["images"]}
    predictions, correct1, correct5 = {}, 0, 0
    for ann in data["annotations"]:
        name = files.get(ann["image_id"])
        x, y, w, h = ann["bbox"]
        if ann["category_id"] not in ids or name is None or os.path.normpath(name).startswith("..") or w <= 0 or h <= 0:
            continue
        path = Path(images_dir) / name
        if not path.is_file():
            continue
        image = Image.open(path).convert("RGB")
        region = official_region_features_per_box(model, processor, image, [[x, y, x + w, y + h]])[0]
        cosine = (region / region.norm()) @ text.T.to(region.device)
        probability = (100.0 * cosine).softmax(-1)
        top = probability.topk(min(5, len(ids))).indices.tolist()
        predictions[ann["id"]] = ([ids[i] for i in top], cosine[top].tolist())
        correct1 += ids[top[0]] == ann["category_id"]
        correct5 += ann["category_id"] in [ids[i] for i in top]
    count = len(predictions)
    return {"top1": correct1 / count, "top5": correct5 / count, "predictions": predictions}


# ------------------------------------------- official FG-OVD, retrieval and zero-shot (fgclip2/eval/*.py)
@torch.no_grad()
def official_image_embedding(model, processor, image, **processing) -> torch.Tensor:
    """(D,) normalised global embedding as the official retrieval scripts make it: the image alone through
    the processor (padded to its budget), ``get_image_features`` with the processor's whole output."""
    inputs = {k: v.to(model.device) for k, v in processor(images=image, return_tensors="pt", **processing).items()}
    feats = model.get_image_features(**inputs)[0].float()
    return feats / feats.norm()


@torch.no_grad()
def official_fgovd(model, processor, tokenizer, ann_file, images_dir) -> dict:
    """``fgovd_bbox_roi.py``: per JSONL line the image processed alone, the xywh box pooled by RoIAlign,
    positives then negatives lower-cased (box walk, 64 tokens), softmax(100 * cos); right when the first
    text's probability equals the maximum. Returns ``accuracy``, ``count``, each line's outcome, the
    first text's probability and the highest one (``best_prob``)."""
    import json
    from pathlib import Path

    from PIL import Image

    outcomes, first, best = [], [], []
    for line in Path(ann_file).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        msg = json.loads(line)
        image = Image.open(Path(images_dir) / msg["img_path"]).convert("RGB")
        x, y, w, h = msg["bbox"]
        region = official_region_features_per_box(model, processor, image, [[x, y, x + w, y + h]])[0].float()
        region = region / region.norm()
        text = official_text_embeddings(model, tokenizer, msg["pos_expression"] + msg["neg_expression"], "box")
        probability = (100.0 * region @ text.T).softmax(dim=-1)
        outcomes.append(bool(torch.equal(probability.max(), probability[0])))
        first.append(float(probability[0]))
        best.append(float(probability.max()))
    return {"accuracy": sum(outcomes) / len(outcomes), "count": len(outcomes), "outcomes": outcomes, "first": first,
            "best_prob": best}


def official_recalls(similarity: torch.Tensor, owner: list[int], ks=(1, 5, 10)) -> dict:
    """The official recall loops on an (images, texts) similarity: an image's query is right at k when one
    of its captions is among ``argsort()[-k:]``; a caption's when its image is. Also every query's rank of
    its best true answer (``i2t_ranks``, ``t2i_ranks``; 0: first)."""
    out = {"i2t_ranks": [min(similarity[i].argsort(descending=True).tolist().index(t) for t in range(len(owner))
                             if owner[t] == i) for i in range(similarity.shape[0])],
           "t2i_ranks": [similarity[:, t].argsort(descending=True).tolist().index(owner[t])
                         for t in range(similarity.shape[1])]}
    for k in ks:
        right = 0
        for i in range(similarity.shape[0]):
            top = similarity[i].argsort()[-k:].tolist()
            right += any(owner[t] == i for t in top)
        out[f"i2t_r{k}"] = right / similarity.shape[0]
        right = 0
        for t in range(similarity.shape[1]):
            right += owner[t] in similarity[:, t].argsort()[-k:].tolist()
        out[f"t2i_r{k}"] = right / similarity.shape[1]
    return out


@torch.no_grad()
def official_retrieval(model, processor, tokenizer, pairs, walk_type: str = "short", lowercase: bool = True) -> dict:
    """The retrieval scripts (``coco_retrieval.py``, ``flickr30k_retrieval.py``, ``coco_cn.py``,
    ``flicker_cna.py``, ``dci_retrieval.py``, ``share1k_retrieval.py``, ``long_trans_cn.py``): ``pairs`` is
    a list of (image path, its captions as the script selected them); each image encoded alone, captions
    by ``walk_type`` (64 or 196 tokens); similarity sigmoid(exp(logit_scale) * cos + logit_bias)."""
    from PIL import Image

    images, texts, owner = [], [], []
    for index, (path, captions) in enumerate(pairs):
        images.append(official_image_embedding(model, processor, Image.open(path).convert("RGB")))
        texts.append(official_text_embeddings(model, tokenizer, list(captions), walk_type, lowercase))
        owner += [index] * len(captions)
    image, text = torch.stack(images), torch.cat(texts)
    logits = text @ image.T * model.logit_scale.exp().float() + model.logit_bias.float()
    return official_recalls(torch.sigmoid(logits.T), owner)


@torch.no_grad()
def official_zeroshot(model, processor, tokenizer, samples, classnames, templates) -> dict:
    """``in1k/eval_IN1K.py``: every class's templates filled and lower-cased (short walk, 64 tokens),
    normalised, averaged, normalised; each image at a fixed 1024-patch budget; sigmoid(scale * cos + bias);
    top-1 / top-5 and each image's five best classes. ``samples`` is a list of (image path, class index)."""
    from PIL import Image

    weights = []
    for name in classnames:
        embeds = official_text_embeddings(model, tokenizer, [t.format(name) for t in templates], "short")
        mean = embeds.mean(0)
        weights.append(mean / mean.norm())
    weights = torch.stack(weights, dim=1)
    top1 = top5 = 0
    tops = []
    for path, label in samples:
        image = official_image_embedding(model, processor, Image.open(path).convert("RGB"),
                                         dynamic_max_patches=False, max_num_patches=1024)
        logits = torch.sigmoid(model.logit_scale.exp().float() * image @ weights + model.logit_bias.float())
        top = logits.topk(min(5, len(classnames))).indices.tolist()
        tops.append(top)
        top1 += top[0] == label
        top5 += label in top
    return {"top1": top1 / len(samples), "top5": top5 / len(samples), "tops": tops}


__all__ = ["dense_head_reference", "official_4d_mask", "official_box_classification", "official_dense_features",
           "official_fgovd", "official_image_embedding", "official_recalls", "official_region_features_per_box",
           "official_retrieval", "official_text_embeddings", "official_text_features", "official_zeroshot"]
