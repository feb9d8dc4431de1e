"""The mmengine model wrapper: objectives on/off, freezing, per-module learning rates, checkpointing."""

import math
from pathlib import Path

import pytest
import torch

from fgdense import FGCLIP2ImageProcessor, load_tokenizer
from fgdense.train.data import FineHARDCollator, FineHARDDataset
from fgdense.train.model import FGCLIP2Stage2
from _train_helpers import make_world


@pytest.fixture(scope="module")
def batch(tiny_checkpoint, tmp_path_factory):
    data = make_world(tmp_path_factory.mktemp("world"), num_train=4, seed=2)["finehard"]
    ds = FineHARDDataset(Path(data["ann_file"], "en.jsonl"), data["image_root"], max_boxes=2, progress=False)
    collate = FineHARDCollator(load_tokenizer(tiny_checkpoint), FGCLIP2ImageProcessor.from_pretrained(tiny_checkpoint))
    return collate([ds[i] for i in range(4)])


def total(losses):
    return sum(v for k, v in losses.items() if k.startswith("loss"))


def test_all_objectives_and_scales(tiny_checkpoint, batch):
    model = FGCLIP2Stage2(str(tiny_checkpoint))
    assert float(model.logit_scale_finegraind.detach()) == pytest.approx(math.log(100))
    losses = model(**batch)
    assert {"loss_long", "loss_short", "loss_region", "loss_text_intra", "loss_hard"} <= set(losses)
    total(losses).backward()
    # Gradients reach the dense head through RoIAlign, and both learnable region scales.
    assert model.model.dense_feature_head.mlp.fc1.weight.grad.abs().sum() > 0
    assert model.logit_scale_finegraind.grad is not None and model.logit_scale_hardneg.grad is not None


def test_weights_switch_objectives_off(tiny_checkpoint, batch):
    model = FGCLIP2Stage2(str(tiny_checkpoint), loss_weights=dict(short=0, text_intra=0, hard=0))
    assert set(model(**batch)) == {"loss_long", "loss_region"}
    with pytest.raises(ValueError, match="unknown loss weights"):
        FGCLIP2Stage2(str(tiny_checkpoint), loss_weights=dict(regoin=1))


def test_frozen_text_tower_does_not_move(tiny_checkpoint, batch):
    model = FGCLIP2Stage2(str(tiny_checkpoint), frozen=["text_model."])
    text_before = {k: v.clone() for k, v in model.model.text_model.state_dict().items()}
    vision_before = model.model.vision_model.embeddings.patch_embedding.weight.clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    total(model(**batch)).backward()
    optimizer.step()
    assert all(torch.equal(v, model.model.text_model.state_dict()[k]) for k, v in text_before.items())
    assert not torch.equal(vision_before, model.model.vision_model.embeddings.patch_embedding.weight)


def test_per_module_learning_rates(tiny_checkpoint):
    from mmengine.optim import build_optim_wrapper

    model = FGCLIP2Stage2(str(tiny_checkpoint))
    wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3),
                                              paramwise_cfg=dict(custom_keys={"text_model": dict(lr_mult=0.1)})))
    names = {id(p): n for n, p in model.named_parameters()}
    lrs = {names[id(p)]: group["lr"] for group in wrapper.optimizer.param_groups for p in group["params"]}
    assert lrs["model.text_model.embeddings.token_embedding.weight"] == pytest.approx(1e-4)
    assert lrs["model.vision_model.embeddings.patch_embedding.weight"] == pytest.approx(1e-3)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_checkpoint, batch):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = FGCLIP2Stage2(str(tiny_checkpoint), gradient_checkpointing=checkpointing)
        total(model(**batch)).backward()
        grads.append(model.model.vision_model.encoder.layers[0].mlp.fc1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_batch_of_unreadable_images_gives_zero_loss(tiny_checkpoint):
    model = FGCLIP2Stage2(str(tiny_checkpoint))
    losses = model(size=0, skipped=4, epoch=2)
    assert float(total(losses).detach()) == 0.0 and model.skipped_per_epoch[2] == 4
    total(losses).backward()  # still a valid graph for DDP


def test_start_from_siglip2_and_export(tmp_path, batch):
    from transformers import Siglip2Config, Siglip2Model

    from fgdense import FGCLIP2Model
    from fgdense.tiny import build_tokenizer
    from fgdense.train.hooks import export_checkpoint

    tokenizer = build_tokenizer()
    dims = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    siglip = Siglip2Model(Siglip2Config(text_config=dict(dims, vocab_size=len(tokenizer)),
                                        vision_config=dict(dims, num_patches=256)))
    folder = tmp_path / "siglip2"
    siglip.save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    FGCLIP2ImageProcessor(max_num_patches=256).save_pretrained(folder)

    model = FGCLIP2Stage2(str(folder), init_from="siglip2")
    total(model(**batch)).backward()
    exported = export_checkpoint(model, tmp_path / "export", str(folder))
    loaded = FGCLIP2Model.from_pretrained(exported)
    assert torch.equal(loaded.boxtext_head.weight, model.model.boxtext_head.weight.detach())
    assert load_tokenizer(exported)("red mug")["input_ids"] == load_tokenizer(folder)("red mug")["input_ids"]


def test_distillation_pulls_toward_the_frozen_start(tiny_checkpoint, batch):
    model = FGCLIP2Stage2(str(tiny_checkpoint), loss_weights=dict(distill_global=1.0, distill_dense=2.0))
    losses = model(**batch)
    # At the start the network is its own teacher.
    assert float(losses["loss_distill_global"].detach()) < 1e-5 and float(losses["loss_distill_dense"].detach()) < 1e-5
    # The teacher is neither trained nor saved in training checkpoints.
    assert not any("teacher" in name for name in model.state_dict())
    assert all(not p.requires_grad for p in model._teacher[0].parameters())
    teacher_before = {k: v.clone() for k, v in model._teacher[0].state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        total(model(**batch)).backward()
        optimizer.step()
    after = model(**batch)
    assert float(after["loss_distill_global"].detach()) > 1e-4 and float(after["loss_distill_dense"].detach()) > 1e-4
    assert all(torch.equal(v, model._teacher[0].state_dict()[k]) for k, v in teacher_before.items())
    # Its gradient points back toward the start: one step on the distillation losses alone lowers them.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    distill = after["loss_distill_global"] + after["loss_distill_dense"]
    distill.backward()
    optimizer.step()
    again = model(**batch)
    assert float((again["loss_distill_global"] + again["loss_distill_dense"]).detach()) < float(distill.detach())


def test_frozen_text_side_is_encoded_once(tiny_checkpoint, batch):
    frozen = ["text_model.", "boxtext_head.", "longtext_head."]
    model = FGCLIP2Stage2(str(tiny_checkpoint), frozen=frozen)
    assert all(model._text_frozen.values())
    reference = FGCLIP2Stage2(str(tiny_checkpoint))
    ids = batch["hard_ids"].flatten(0, 2)
    cached = model.text_features(ids, "box")
    assert len(model._text_cache) == len({bytes(r) for r in ids.numpy()})
    torch.testing.assert_close(cached, reference.text_features(ids, "box"))
    model.text_features(batch["box_ids"].flatten(0, 1), "box")
    calls = []
    handle = model.model.text_model.register_forward_hook(lambda *args: calls.append(1))
    losses = model(**batch)
    assert {"loss_long", "loss_short", "loss_region", "loss_hard"} <= set(losses)
    assert len(calls) == 2  # only the long and short captions were new; every box text was remembered
    handle.remove()
    model.load_state_dict(model.state_dict())
    assert not model._text_cache  # loading weights forgets remembered texts
    # With only the tower frozen, the box head still trains: nothing is remembered for its walk.
    partly = FGCLIP2Stage2(str(tiny_checkpoint), frozen=["text_model."])
    assert partly._text_frozen == {"short": True, "box": False, "long": False}


def test_mask_objective_trains_the_dense_head(tiny_checkpoint, tmp_path):
    from fgdense.train.coco import CocoRegionDataset

    world = make_world(tmp_path / "world", num_train=4, seed=4)
    ds = CocoRegionDataset(world["train_ann"], world["train_images"], masks=True, progress=False)
    collate = FineHARDCollator(load_tokenizer(tiny_checkpoint), FGCLIP2ImageProcessor.from_pretrained(tiny_checkpoint))
    masked = collate([ds[(i, 0)] for i in range(4)])
    model = FGCLIP2Stage2(str(tiny_checkpoint), loss_weights=dict(long=0, short=0, region=0, text_intra=0, hard=0,
                                                                  mask=1.0))
    losses = model(**masked)
    assert set(losses) == {"loss_mask"}
    losses["loss_mask"].backward()
    assert model.model.dense_feature_head.mlp.fc1.weight.grad.abs().sum() > 0
    # Pooling under a mask that covers exactly one grid cell gives that cell's feature.
    dense = torch.randn(1, 12, 8)
    mask = torch.zeros(1, 1, 3, 4)
    mask[0, 0, 1, 2] = 1.0
    pooled = FGCLIP2Stage2._mask_pooled(dense, torch.tensor([[3, 4]]), mask)
    torch.testing.assert_close(pooled[0, 0], torch.nn.functional.normalize(dense[0, 1 * 4 + 2], dim=0))


def test_text_intra_objective_spreads_the_texts(tiny_checkpoint, batch):
    """Alone, the text intra-modal objective pushes a batch's box texts apart.

    The tiny random text tower makes all texts more alike than the default near-duplicate cut-off
    (0.95), which would leave nothing to push; a higher cut-off lets the objective act.
    """
    weights = dict(long=0, short=0, region=0, hard=0, text_intra=1.0)
    model = FGCLIP2Stage2(str(tiny_checkpoint), loss_weights=weights, text_intra_same_threshold=0.9999)
    ids = batch["box_ids"][batch["box_counts"] > 0].flatten(0, 1)

    def mean_similarity():
        with torch.no_grad():
            texts = model.text_features(ids, "box")
        return float(((texts @ texts.t()).sum() - len(texts)) / (len(texts) * (len(texts) - 1)))

    start = mean_similarity()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = model(**batch)["loss_text_intra"]
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    print(f"text intra loss {losses[0]:.4f} -> {losses[-1]:.4f}, mean text cosine {start:.4f} -> {mean_similarity():.4f}")
    assert losses[-1] < losses[0] - 0.01 and mean_similarity() < start - 0.01
