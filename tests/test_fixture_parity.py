"""Every case of the reference fixture's manifest, through the public API, fp32 on CPU.

The fixture holds golden outputs of the official FG-CLIP 2 code; these tests define "faithful".
"""

import pytest
import torch

from conftest import FIXTURE, assert_close, cases_of


@pytest.mark.parametrize("case", cases_of("image_processor"))
def test_image_processor(case, ref_processor, expected, manifest):
    tol = manifest["tolerances"]["image_processor"]
    out = ref_processor([FIXTURE / "images" / name for name in case["images"]], return_tensors="pt", **case["kwargs"])
    for key in ("pixel_values", "pixel_attention_mask", "spatial_shapes"):
        assert_close(out[key], expected[case[key]], tol, f"{case['id']}.{key}")


@pytest.mark.parametrize("case", cases_of("vision"))
def test_vision(case, ref_model, expected, manifest):
    tol = manifest["tolerances"]["features"]
    inputs = [expected[case[k]] for k in ("pixel_values", "pixel_attention_mask", "spatial_shapes")]
    with torch.no_grad():
        assert_close(ref_model.get_image_features(*inputs), expected[case["image_features"]], tol, "image_features")
        assert_close(ref_model.get_image_dense_feature(*inputs), expected[case["dense_features"]], tol, "dense_features")
        regions = ref_model.get_image_region_features(
            *inputs, image_sizes=case["image_sizes_hw"], region_infos=case["boxes_xyxy"]
        )
    assert len(regions) == len(case["region_features"])
    for got, name in zip(regions, case["region_features"]):
        assert_close(got, expected[name], tol, name)


@pytest.mark.parametrize("case", cases_of("text"))
def test_text(case, ref_model, ref_tokenizer, expected, manifest):
    from fgdense import tokenize

    tokens = tokenize(ref_tokenizer, case["captions"], case["walk_type"])
    assert tokens["input_ids"].shape[1] == case["max_length"]
    assert torch.equal(tokens["input_ids"], expected[case["input_ids"]])
    assert torch.equal(tokens["attention_mask"], expected[case["attention_mask"]])
    mask = tokens["attention_mask"] if case["use_attention_mask"] else None
    with torch.no_grad():
        feats = ref_model.get_text_features(tokens["input_ids"], attention_mask=mask, walk_type=case["walk_type"])
    assert_close(feats, expected[case["text_features"]], manifest["tolerances"]["features"], case["id"])


@pytest.mark.parametrize("case", cases_of("forward"))
def test_forward_logits(case, ref_model, expected, manifest):
    proc = next(c for c in manifest["cases"] if c["id"] == case["input"])
    with torch.no_grad():
        out = ref_model(
            input_ids=expected[case["input_ids"]],
            pixel_values=expected[proc["pixel_values"]],
            pixel_attention_mask=expected[proc["pixel_attention_mask"]],
            spatial_shapes=expected[proc["spatial_shapes"]],
            walk_type=case["walk_type"],
        )
    tol = manifest["tolerances"]["features"]
    assert_close(out.logits_per_image, expected[case["logits_per_image"]], tol, "logits_per_image")
    assert_close(out.logits_per_text, expected[case["logits_per_image"]].t(), tol, "logits_per_text")
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(3))


@pytest.mark.parametrize("case", cases_of("stage2_init"))
def test_stage2_position_stretch(case, expected, manifest):
    from fgdense.model.siglip2_init import stretch_position_embedding

    stretched = stretch_position_embedding(expected[case["source_position_embedding"]], keep_len=20)
    tol = manifest["tolerances"]["features"]
    assert_close(stretched, expected[case["position_embedding_ori"]], tol, "position_embedding_ori")
    assert_close(stretched, expected[case["position_embedding_res"]], tol, "position_embedding_res")


@pytest.mark.parametrize("case", cases_of("stage2_init"))
def test_init_from_siglip2_checkpoint(case, tmp_path, expected):
    """A transformers SigLIP 2 checkpoint becomes an FG-CLIP 2 model by the official recipe."""
    from transformers import Siglip2Config, Siglip2Model

    from fgdense import init_from_siglip2
    from fgdense.model.siglip2_init import stretch_position_embedding

    torch.manual_seed(0)
    siglip = Siglip2Model(Siglip2Config(
        text_config=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_patches=16),
    ))
    siglip.save_pretrained(tmp_path)
    model = init_from_siglip2(tmp_path)
    src = siglip.state_dict()
    dst = model.state_dict()
    stretched = stretch_position_embedding(src["text_model.embeddings.position_embedding.weight"])
    assert torch.equal(dst["text_model.embeddings.position_embedding_ori.weight"], stretched)
    assert torch.equal(dst["text_model.embeddings.position_embedding_res.weight"], stretched)
    for head in ("longtext_head", "boxtext_head"):
        assert torch.equal(dst[f"{head}.weight"], src["text_model.head.weight"])
        assert torch.equal(dst[f"{head}.bias"], src["text_model.head.bias"])
    for key, value in src.items():
        if key.startswith("vision_model.head."):
            assert torch.equal(dst["dense_feature_head." + key[len("vision_model.head."):]], value)
        if key in dst:
            assert torch.equal(dst[key], value), key
    # The copied towers compute what SigLIP 2 computes (short walk = SigLIP 2 text features).
    ids = torch.randint(0, 128, (2, 64))
    with torch.no_grad():
        ours = model.get_text_features(ids, walk_type="short")
        theirs = siglip.get_text_features(input_ids=ids)
        theirs = theirs.pooler_output if hasattr(theirs, "pooler_output") else theirs
    assert torch.allclose(ours, theirs, atol=1e-5)
