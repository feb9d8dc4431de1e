"""The four stage-2 objectives against the official code's fp32 reference values."""

import pytest
import torch

from fgdense.train.losses import (hard_negative_loss, region_contrastive_loss, siglip_loss, sync_threshold,
                                  text_intra_modal_loss)


@pytest.fixture(scope="module")
def case(manifest):
    return next(c for c in manifest["cases"] if c["id"] == "losses")


def close(value, target):
    assert abs(float(value) - target) <= 1e-4 * abs(target), f"{float(value)} != {target}"


def test_siglip(case, expected):
    c = case["siglip"]
    close(siglip_loss(expected[c["image"]], expected[c["text"]], c["logit_scale_log"], c["logit_bias"]), c["value"])


def test_region_contrastive(case, expected):
    c = case["region_pairwise"]
    close(region_contrastive_loss(expected[c["image"]], expected[c["text"]], c["logit_scale_log"]), c["value"])


def test_text_intra_modal(case, expected):
    c = case["text_intra_modal"]
    close(text_intra_modal_loss(expected[c["text"]], c["topk"], c["same_threshold"]), c["value"])


def test_hard_negative(case, expected):
    c = case["hard_negative"]
    region = expected[c["image"]]
    texts = expected[c["text"]].reshape(len(region), 1 + c["negatives_per_box"], -1)
    loss, threshold = hard_negative_loss(region, texts, c["threshold_in"], torch.tensor(c["logit_scale_log"]))
    close(loss, c["value"])
    close(threshold, c["threshold_out"])
    # Single process: the synchronised threshold is just the clamped value.
    assert float(sync_threshold(threshold)) == 0.0
    assert float(sync_threshold(torch.tensor(12.5))) == 10.0


def test_losses_have_gradients(case, expected):
    c = case["hard_negative"]
    region = expected[c["image"]].clone().requires_grad_()
    scale = torch.tensor(c["logit_scale_log"], requires_grad=True)
    texts = expected[c["text"]].reshape(len(region), 11, -1)
    loss, _ = hard_negative_loss(region, texts, 0.0, scale)
    (loss + region_contrastive_loss(region, texts[:, 0], scale)).backward()
    assert region.grad.abs().sum() > 0 and scale.grad.abs() > 0


def test_distinct_keys_give_the_official_losses(case, expected):
    c = case["hard_negative"]
    region = expected[c["image"]]
    texts = expected[c["text"]].reshape(len(region), 1 + c["negatives_per_box"], -1)
    keys = torch.arange(texts.shape[0] * texts.shape[1]).reshape(texts.shape[:2])
    scale = torch.tensor(c["logit_scale_log"])
    official, _ = hard_negative_loss(region, texts, c["threshold_in"], scale)
    keyed, _ = hard_negative_loss(region, texts, c["threshold_in"], scale, keys)
    torch.testing.assert_close(keyed, official)
    torch.testing.assert_close(region_contrastive_loss(region, texts[:, 0], scale, keys[:, 0]),
                               region_contrastive_loss(region, texts[:, 0], scale))
    torch.testing.assert_close(siglip_loss(region, texts[:, 0], 2.0, -1.0, keys=keys[:, 0]),
                               siglip_loss(region, texts[:, 0], 2.0, -1.0))


def test_equal_keys_are_positives_not_negatives():
    """Two boxes of one category: each one's text is a positive of the other, not a negative."""
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    text = torch.stack([text[0], text[0], text[1]])  # boxes 0 and 1 share a caption
    region = text.clone()  # every region sits exactly on its caption
    keys = torch.tensor([5, 5, 9])
    scale = torch.tensor(3.0)
    # Officially, region 0 is pushed away from box 1's caption, which is its own: the loss cannot reach
    # its floor. With keys, a region exactly on its caption is as good as it gets.
    official, keyed = region_contrastive_loss(region, text, scale), region_contrastive_loss(region, text, scale, keys)
    assert keyed < official - 0.3
    assert float(keyed) == pytest.approx(-(torch.log_softmax(scale.exp() * region @ text.t(), 1)[2, 2]).item() / 3
                                         - (torch.log_softmax(scale.exp() * text @ region.t(), 1)[2, 2]).item() / 3, abs=1e-4)
    # The gradient no longer pulls region 0 off its caption toward region 1's... which is the same one.
    grad_region = region.clone().requires_grad_()
    region_contrastive_loss(grad_region, text, scale, keys).backward()
    assert grad_region.grad[:2].norm() < 1e-3
    assert siglip_loss(region, text, 2.0, -1.0, keys=keys) < siglip_loss(region, text, 2.0, -1.0) - 0.5
