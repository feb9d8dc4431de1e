"""Attention paths and precisions agree with the fp32 SDPA model on the reference fixture."""

import pytest
import torch
import torch.nn.functional as F

from conftest import CHECKPOINT


def _vision_inputs(expected, proc="proc12"):
    return [expected[f"{proc}.{k}"] for k in ("pixel_values", "pixel_attention_mask", "spatial_shapes")]


@pytest.fixture(scope="module")
def eager_model():
    from fgdense import FGCLIP2Model

    return FGCLIP2Model.from_pretrained(CHECKPOINT, attn_implementation="eager")


def test_sdpa_and_eager_agree(ref_model, eager_model, expected):
    inputs = _vision_inputs(expected)
    ids, mask = expected["text.long.mask.input_ids"], expected["text.long.mask.attention_mask"]
    with torch.no_grad():
        for fn in ("get_image_features", "get_image_dense_feature"):
            a, b = getattr(ref_model, fn)(*inputs), getattr(eager_model, fn)(*inputs)
            assert torch.allclose(a, b, atol=1e-5), fn
        a = ref_model.get_text_features(ids, mask, walk_type="long")
        b = eager_model.get_text_features(ids, mask, walk_type="long")
        assert torch.allclose(a, b, atol=1e-5)


def _cos_dist(a, b):
    return (1 - F.cosine_similarity(a.float().flatten(0, -2), b.float().flatten(0, -2), dim=-1)).max().item()


def test_bf16_autocast_close_to_fp32(ref_model, expected):
    inputs = _vision_inputs(expected)
    valid = inputs[1].bool()
    ids = expected["text.box.nomask.input_ids"]
    with torch.no_grad():
        fp32 = (ref_model.get_image_features(*inputs), ref_model.get_image_dense_feature(*inputs)[valid],
                ref_model.get_text_features(ids, walk_type="box"))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = (ref_model.get_image_features(*inputs), ref_model.get_image_dense_feature(*inputs)[valid],
                    ref_model.get_text_features(ids, walk_type="box"))
    assert bf16[0].dtype == torch.bfloat16 and bf16[2].dtype == torch.bfloat16  # autocast really ran in bf16
    for name, a, b in zip(("image", "dense", "text"), fp32, bf16):
        assert _cos_dist(a, b) < 2e-2, name


def test_bf16_weights_close_to_fp32(expected, ref_model):
    from fgdense import FGCLIP2Model

    model = FGCLIP2Model.from_pretrained(CHECKPOINT, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    inputs = _vision_inputs(expected)
    with torch.no_grad():
        a = ref_model.get_image_dense_feature(*inputs)[inputs[1].bool()]
        b = model.get_image_dense_feature(*inputs)[inputs[1].bool()]
    assert _cos_dist(a, b) < 2e-2


@pytest.mark.parametrize("pad", [0, 5])
def test_fast_dense_head_equals_official_formulation(ref_model, pad):
    """The SDPA dense head equals nn.MultiheadAttention with the official (B*heads, N, N) mask."""
    from benchmarks.reference import dense_head_reference
    from fgdense.model.heads import dense_head_forward

    torch.manual_seed(pad)
    hidden = torch.randn(2, 24, 64)
    valid = torch.ones(2, 24, dtype=torch.int32)
    if pad:
        valid[0, -pad:] = 0
    head = ref_model.dense_feature_head
    with torch.no_grad():
        fast = dense_head_forward(head, hidden, valid)
        ref = dense_head_reference(head, hidden, valid)
    rows = valid.bool()
    assert torch.allclose(fast[rows], ref[rows], atol=1e-5)
    if pad:  # the padded image's real rows must not see its padding: differs from the unmasked result
        unmasked = dense_head_forward(head, hidden, None)
        assert not torch.allclose(unmasked[0, :-pad], fast[0, :-pad], atol=1e-4)
