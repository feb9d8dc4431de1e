"""The one text policy: texts reach the model as the checkpoint's tokenizer returns them (mask included when
it returns one), through encode_text and every task, for tokenizers with and without a mask."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.reference import official_region_features_per_box, official_text_embeddings
from conftest import FIXTURE, assert_close, cases_of
from fgdense import BoxClassifier, Grounder, Segmenter, encode_text, tokenize
from fgdense.errors import LabelError

IMAGE = FIXTURE / "images" / "img1_200x120.png"
LABELS = ["cat", "a photo of a cat", "电脑", "Red Mug", "window"]


@pytest.fixture(scope="module", params=["mask", "no mask"])
def tokenizer(request, ref_tokenizer):
    """The fixture's tokenizer as it is (it returns an attention mask), and made to return ids only."""
    if request.param == "mask":
        return ref_tokenizer
    plain = copy.deepcopy(ref_tokenizer)
    plain.model_input_names = ["input_ids"]
    return plain


@pytest.mark.parametrize("case", cases_of("text"))
def test_encode_text_equals_the_fixture_with_and_without_the_mask(case, ref_model, ref_tokenizer, expected, manifest):
    policy = "tokenizer" if case["use_attention_mask"] else "none"
    feats = encode_text(ref_model, ref_tokenizer, case["captions"], case["walk_type"], normalize=False,
                        text_mask=policy)
    assert_close(feats, expected[case["text_features"]], manifest["tolerances"]["features"], case["id"])


def test_the_mask_is_used_exactly_when_the_tokenizer_returns_one(ref_model, ref_tokenizer, tokenizer):
    inputs = tokenize(tokenizer, LABELS, "box")
    returns_mask = "attention_mask" in tokenizer.model_input_names
    assert set(inputs) == ({"input_ids", "attention_mask"} if returns_mask else {"input_ids"})
    assert set(tokenize(tokenizer, LABELS, "box", text_mask="none")) == {"input_ids"}
    got = encode_text(ref_model, tokenizer, LABELS, "box")
    assert_close(got, official_text_embeddings(ref_model, tokenizer, LABELS), 1e-5, "encode_text")
    without = encode_text(ref_model, ref_tokenizer, LABELS, "box", text_mask="none")
    if returns_mask:
        assert (got - without).abs().max() > 1e-3  # the mask changes the embeddings: the policy matters
    else:
        assert_close(got, without, 1e-6, "no mask either way")


def test_lowercase_is_a_switch_of_the_policy(ref_tokenizer):
    assert tokenize(ref_tokenizer, ["iPhone"], "box", lowercase=False)["input_ids"].tolist() != \
        tokenize(ref_tokenizer, ["iPhone"], "box")["input_ids"].tolist()
    with pytest.raises(LabelError, match="text_mask"):
        tokenize(ref_tokenizer, ["cat"], text_mask="sometimes")


def test_box_classifier_labels_every_box_as_the_official_per_box_computation(ref_model, ref_processor, tokenizer):
    image = Image.open(IMAGE).convert("RGB")
    boxes = [[0, 0, 200, 120], [10, 20, 90, 100], [120, 5, 195, 60], [50, 50, 52, 53]]
    result = BoxClassifier(ref_model, ref_processor, tokenizer).classify(image, boxes, LABELS)
    regions = official_region_features_per_box(ref_model, ref_processor, image, boxes)
    text = official_text_embeddings(ref_model, tokenizer, LABELS)
    cosine = (regions / regions.norm(dim=-1, keepdim=True)) @ text.T
    probabilities = (100.0 * cosine).softmax(-1)
    assert result.top_k[:, 0].tolist() == probabilities.argmax(-1).tolist()
    np.testing.assert_allclose(result.probabilities, probabilities.numpy(), atol=1e-4)
    found = result.to_detections()
    np.testing.assert_allclose(found.confidence, probabilities.max(-1).values.numpy(), atol=1e-4)


def test_segmenter_and_grounder_embed_texts_as_the_official_code(ref_model, ref_processor, tokenizer):
    segmenter = Segmenter(ref_model, ref_processor, tokenizer, max_num_patches=64)
    assert_close(segmenter.label_embeddings(LABELS), official_text_embeddings(ref_model, tokenizer, LABELS), 1e-5,
                 "segmenter")
    result = segmenter.segment(IMAGE, LABELS, threshold=None)
    feats = segmenter.image_features([Image.open(IMAGE).convert("RGB")])[0]
    want = feats.upsample(feats.similarity(official_text_embeddings(ref_model, tokenizer, LABELS))).numpy()
    np.testing.assert_allclose(result.scores, want, atol=1e-5)

    long_phrase = "the small black cat sitting on the left of the red mug near the window " * 6
    grounder = Grounder(ref_model, ref_processor, tokenizer)
    text, walks = grounder.phrase_embeddings(["一只猫", long_phrase])
    assert walks == ["box", "long"]
    assert_close(text[0], official_text_embeddings(ref_model, tokenizer, ["一只猫"])[0], 1e-5, "box phrase")
    assert_close(text[1], official_text_embeddings(ref_model, tokenizer, [long_phrase], "long")[0], 1e-5, "long phrase")


def test_text_mask_none_on_a_task_gives_the_training_convention(ref_model, ref_processor, ref_tokenizer):
    classifier = BoxClassifier(ref_model, ref_processor, ref_tokenizer, text_mask="none")
    ids = tokenize(ref_tokenizer, LABELS, "box")["input_ids"]
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref_model.get_text_features(ids, walk_type="box"), dim=-1)
    assert_close(classifier.label_embeddings(LABELS), want, 1e-5, "ids only")
    # ... and per call, the same way as every setting.
    assert_close(classifier.label_embeddings(LABELS, classifier.configured(text_mask="tokenizer")),
                 encode_text(ref_model, ref_tokenizer, LABELS, "box"), 1e-5, "override")
