"""Dense supervision from masks: patch targets, the per-patch objective learning the right names, the
background threshold calibrated at export and used by ``--threshold auto``."""

import json

import numpy as np
import pytest
import torch

from _train_helpers import make_coco_config, make_world, train
from fgdense import FGCLIP2ImageProcessor, load_tokenizer
from fgdense.train.calibration import best_threshold
from fgdense.train.coco import CocoRegionDataset
from fgdense.train.data import FineHARDCollator
from fgdense.train.dense_supervision import BACKGROUND, IGNORED, patch_targets, patch_text_loss


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("dense_world"), num_train=8, num_val=0, seed=5, objects=(2, 3))


def test_patch_targets_follow_masks_boxes_and_known_background():
    # Two images on 2x3 grids; image 0 has boxes 0 and 1 (box 1 without a mask), image 1 one box.
    masks = torch.zeros(2, 2, 2, 3)
    masks[0, 0, 0, 0] = 1.0  # box 0 covers cell (0, 0)
    masks[0, 0, 0, 1] = 0.3  # an edge cell: neither object nor background
    masks[1, 0, 1, 2] = 0.9  # image 1's box covers cell (1, 2)
    usable = torch.tensor([[True, False], [True, False]])
    shapes = torch.tensor([[2, 3], [2, 2]])  # image 1's real grid is 2x2: its cell (1, 2) is padding
    targets = patch_targets(masks, usable, torch.tensor([True, False]), shapes, length=6)
    assert targets[0].tolist() == [0, IGNORED, BACKGROUND, BACKGROUND, BACKGROUND, BACKGROUND]
    # Image 1: background unknown, its mask lies off its own grid, and the rest is padding.
    assert targets[1].tolist() == [IGNORED] * 6
    masks[1, 0, 0, 1] = 1.0
    targets = patch_targets(masks, usable, torch.tensor([True, True]), shapes, length=6)
    # Image 1's box is the second usable box of the batch (index 1); its grid is 2x2 = 4 patches.
    assert targets[1].tolist() == [BACKGROUND, 1, BACKGROUND, BACKGROUND, IGNORED, IGNORED]


def test_patch_loss_rewards_the_right_text_and_the_background():
    texts = torch.nn.functional.normalize(torch.eye(3)[:2], dim=-1)  # two texts along axes 0 and 1
    dense = torch.tensor([[[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]]])  # patch 0 ~ text 0, 1 ~ text 1, 2 ~ none
    targets = torch.tensor([[0, 1, BACKGROUND]])
    scale, background = torch.tensor(np.log(10.0)), torch.tensor(0.5)
    right = patch_text_loss(dense, targets, texts, None, scale, background)
    swapped = patch_text_loss(dense, torch.tensor([[1, 0, BACKGROUND]]), texts, None, scale, background)
    assert right < 0.05 < swapped
    # Equal keys make two texts one category: either is a positive.
    same = patch_text_loss(dense, torch.tensor([[1, 0, BACKGROUND]]), texts, torch.tensor([7, 7]), scale, background)
    assert same < swapped


def test_best_threshold_separates_masked_from_unmasked():
    rng = np.random.default_rng(0)
    scores = np.r_[rng.uniform(0.0, 0.3, 500), rng.uniform(0.4, 0.9, 100)]
    masked = np.r_[np.zeros(500, bool), np.ones(100, bool)]
    cut = best_threshold(scores, masked)
    assert 0.3 <= cut <= 0.4
    assert ((scores >= cut) == masked).all()


def _patch_accuracy(network, items, collator, names):
    """Share of the object patches of the training images whose best name (of ``names``) is their mask's."""
    from fgdense.prompts import encode_text

    batch = collator(items)
    with torch.no_grad():
        vision = network.vision_outputs(batch["pixel_values"], batch["pixel_attention_mask"], batch["spatial_shapes"])
        dense = torch.nn.functional.normalize(
            network.dense_features_from_hidden(vision.last_hidden_state, batch["pixel_attention_mask"]), dim=-1)
        text = encode_text(network, collator.tokenizer, names, "box", text_mask="tokenizer")
    valid = torch.arange(batch["boxes"].shape[1])[None] < batch["box_counts"][:, None]
    targets = patch_targets(batch["box_masks"], valid & batch["box_has_mask"], batch["background_known"],
                            batch["spatial_shapes"], dense.shape[1])
    box_names = [r.box_keys[j] for r in (it["record"] for it in items) for j in range(len(r.box_keys))]
    cosine = dense @ text.T
    objects = targets >= 0
    wanted = torch.tensor([names.index(box_names[t]) for t in targets[objects].tolist()])
    return float((cosine[objects].argmax(-1) == wanted).float().mean())


def test_coco_tiny_trains_each_patch_to_its_masks_name(world, tiny_checkpoint, tmp_path):
    """coco_tiny's dense supervision: after a short run the patches inside each mask name its category
    (on the training images). Fails when the objective is off or masks meet the wrong texts."""
    from fgdense import FGCLIP2Model

    names = sorted({a["category_id"] for a in json.loads(open(world["train_ann"]).read())["annotations"]})
    categories = {c["id"]: c["name"] for c in json.loads(open(world["train_ann"]).read())["categories"]}
    names = [categories[i] for i in names]
    collator = FineHARDCollator(load_tokenizer(tiny_checkpoint), FGCLIP2ImageProcessor.from_pretrained(tiny_checkpoint),
                                max_num_patches=64, text_mask="tokenizer")
    dataset = CocoRegionDataset(world["train_ann"], world["train_images"], masks=True, num_negatives=0,
                                progress=False)
    items = [dataset[(i, 0)] for i in range(len(dataset))]
    before = _patch_accuracy(FGCLIP2Model.from_pretrained(tiny_checkpoint), items, collator, names)
    cfg = make_coco_config(tiny_checkpoint, world, tmp_path / "run", max_iters=60, batch_size=4, warmup_iters=5,
                           num_negatives=0)
    cfg.model.loss_weights.update(long=0.0, short=0.0, region=0.0, hard=0.0)  # the dense objective alone
    cfg.train_dataloader.dataset.update(templates=["{}"], hflip_prob=0.0, vflip_prob=0.0)
    cfg.train_dataloader.collate_fn.max_num_patches = 64
    runner = train(cfg)
    after = _patch_accuracy(runner.model.model.eval(), items, collator, names)
    assert after > 0.6 and after > before + 0.3, (before, after)


def test_export_carries_a_calibrated_threshold_that_auto_uses(world, tiny_checkpoint, tmp_path):
    from fgdense import Segmenter

    cfg = make_coco_config(tiny_checkpoint, world, tmp_path / "run", max_iters=2, batch_size=4, warmup_iters=1)
    train(cfg)
    export = tmp_path / "run" / "export"
    stored = json.loads((export / "config.json").read_text())["background_threshold"]
    segmenter = Segmenter.from_pretrained(export, device="cpu", max_num_patches=64)
    assert segmenter.resolve_threshold("auto") == pytest.approx(stored)
    # The sigmoid point of the same weights is another number: "auto" must not fall back to it.
    scale, bias = segmenter.model.logit_scale.item(), segmenter.model.logit_bias.item()
    assert abs(-bias / np.exp(scale) - stored) > 1e-4
    image = f"{world['train_images']}/train_00000.png"
    result = segmenter.segment(image, ["red circle", "blue square"])
    assert result.threshold == pytest.approx(stored)
    below = result.scores.max(0) < stored
    assert (result.label_map[below] == -1).all() and (result.label_map[~below] >= 0).all()


def test_a_checkpoint_without_masks_keeps_the_sigmoid_point(tiny_checkpoint):
    from fgdense import Segmenter

    segmenter = Segmenter.from_pretrained(tiny_checkpoint, device="cpu")
    assert segmenter.model.config.background_threshold is None
    scale, bias = segmenter.model.logit_scale.item(), segmenter.model.logit_bias.item()
    assert segmenter.resolve_threshold("auto") == pytest.approx(-bias / np.exp(scale))
