"""Embedder: image, text and region embeddings of collections, equal to the official formulations."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.reference import official_image_embedding, official_region_features_per_box, official_text_embeddings
from conftest import CHECKPOINT, FIXTURE
from fgdense import Embedder, FGCLIP2ImageProcessor, FGCLIP2Model, load_tokenizer
from fgdense.errors import FGDenseError

IMAGES = sorted((FIXTURE / "images").glob("*.png"))


@pytest.fixture(scope="module")
def parts():
    return (FGCLIP2Model.from_pretrained(CHECKPOINT), FGCLIP2ImageProcessor.from_pretrained(CHECKPOINT),
            load_tokenizer(CHECKPOINT))


def test_image_embeddings_equal_the_official_one_image_at_a_time(parts):
    model, processor, _ = parts
    embedder = Embedder(*parts, batch_size=3)
    found = embedder.embed_images_batch([str(p) for p in IMAGES])
    expected = torch.stack([official_image_embedding(model, processor, Image.open(p).convert("RGB")) for p in IMAGES])
    assert found.vectors.dtype == np.float32 and found.vectors.shape == tuple(expected.shape)
    np.testing.assert_allclose(found.vectors, expected.numpy(), atol=1e-5)
    assert found.items == [str(p) for p in IMAGES] and found.kind == "image"
    # A fixed budget is the processor's fixed budget (the zero-shot protocol's 1024).
    fixed = Embedder(*parts, max_num_patches=64).embed_images(IMAGES[1])
    official = official_image_embedding(model, processor, Image.open(IMAGES[1]).convert("RGB"),
                                        max_num_patches=64, dynamic_max_patches=False)
    np.testing.assert_allclose(fixed.vectors[0], official.numpy(), atol=1e-5)


@pytest.mark.parametrize("walk_type", ["short", "box", "long"])
def test_text_embeddings_follow_the_walk_type_and_the_text_policy(parts, walk_type):
    model, _, tokenizer = parts
    texts = ["A Red Car", "一只猫在沙发上", "iPhone"]
    embedder = Embedder(*parts, walk_type=walk_type)
    found = embedder.embed_texts(texts)
    np.testing.assert_allclose(found.vectors, official_text_embeddings(model, tokenizer, texts, walk_type).numpy(),
                               atol=1e-5)
    kept = embedder.embed_texts(texts, lowercase=False)
    np.testing.assert_allclose(kept.vectors, official_text_embeddings(model, tokenizer, texts, walk_type,
                                                                      lowercase=False).numpy(), atol=1e-5)
    assert not np.allclose(kept.vectors[0], found.vectors[0])  # "A Red Car" is not "a red car"
    # The lower-cased encoder is not disturbed by the other call.
    np.testing.assert_allclose(embedder.embed_texts(texts).vectors, found.vectors, atol=0)


def test_region_embeddings_and_scores(parts):
    model, processor, _ = parts
    boxes = [[0, 0, 100, 60], [50, 20, 200, 120]]
    embedder = Embedder(*parts)
    found = embedder.embed_regions_batch([IMAGES[1]], [boxes])[0]
    official = official_region_features_per_box(model, processor, Image.open(IMAGES[1]).convert("RGB"), boxes)
    np.testing.assert_allclose(found.vectors, torch.nn.functional.normalize(official, dim=-1).numpy(), atol=1e-5)
    assert len(found.items) == 2 and found.items[0].endswith("#0.0,0.0,100.0,60.0")
    images, texts = embedder.embed_images_batch(IMAGES[:2]), embedder.embed_texts(["a", "b", "c"])
    scores = embedder.scores(images, texts)
    logits = images.cosine(texts) * model.logit_scale.exp().item() + model.logit_bias.item()
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), atol=1e-6)
    payload = json.loads(json.dumps(texts.to_json()))
    assert payload["kind"] == "text" and len(payload["items"]) == 3 and payload["dimension"] == texts.vectors.shape[1]


def test_bad_settings_and_inputs_are_one_clear_error(parts):
    with pytest.raises(FGDenseError, match="walk_type"):
        Embedder(*parts, walk_type="medium")
    with pytest.raises(FGDenseError, match="list of images"):
        Embedder(*parts).embed_images_batch("one.png")
    with pytest.raises(FGDenseError):
        Embedder(*parts).embed_texts([])
