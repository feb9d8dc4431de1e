"""FGCLIP2Processor: one object for a checkpoint's image processor and tokenizer, the text policy inside."""

import numpy as np
import pytest
import torch

from fgdense import FGCLIP2ImageProcessor, FGCLIP2Model, FGCLIP2Processor, LabelError, Segmenter, tokenize
from fgdense.tiny import make_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_from_pretrained_holds_the_checkpoints_halves(checkpoint):
    processor = FGCLIP2Processor.from_pretrained(checkpoint)
    assert processor.image_processor.to_dict() == FGCLIP2ImageProcessor.from_pretrained(checkpoint).to_dict()
    assert processor.tokenizer("red mug")["input_ids"] == processor.tokenizer.__class__.from_pretrained(
        str(checkpoint))("red mug")["input_ids"]


def test_call_gives_image_and_text_inputs_by_the_text_policy(checkpoint):
    processor = FGCLIP2Processor.from_pretrained(checkpoint)
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    both = processor(images=image, text=["A Red Mug"], walk_type="long")
    alone = processor.image_processor(image)
    for key in ("pixel_values", "pixel_attention_mask", "spatial_shapes"):
        assert torch.equal(both[key], alone[key])
    policy = tokenize(processor.tokenizer, ["A Red Mug"], "long")
    assert both["input_ids"].shape == (1, 196)
    assert torch.equal(both["input_ids"], policy["input_ids"])
    # lower-cased as the policy says, unless the caller asks otherwise
    kept = processor(text=["A Red Mug"], lowercase=False)
    assert not torch.equal(kept["input_ids"], processor(text=["a red mug"])["input_ids"])
    assert torch.equal(processor(text=["A Red Mug"])["input_ids"], processor(text=["a red mug"])["input_ids"])


def test_save_and_load_round_trip(checkpoint, tmp_path):
    processor = FGCLIP2Processor.from_pretrained(checkpoint)
    processor.save_pretrained(tmp_path / "copy")
    again = FGCLIP2Processor.from_pretrained(tmp_path / "copy")
    assert again.image_processor.to_dict() == processor.image_processor.to_dict()
    assert torch.equal(again(text="cat")["input_ids"], processor(text="cat")["input_ids"])


def test_tasks_take_one_processor_or_the_two_halves(checkpoint):
    model = FGCLIP2Model.from_pretrained(checkpoint, device="cpu")
    processor = FGCLIP2Processor.from_pretrained(checkpoint)
    whole = Segmenter(model, processor)
    assert whole.processor is processor and whole.tokenizer is processor.tokenizer
    halves = Segmenter(model, processor.image_processor, processor.tokenizer)
    assert halves.image_processor is processor.image_processor and halves.tokenizer is processor.tokenizer
    found = Segmenter(model)  # the model's checkpoint's own
    assert found.image_processor.to_dict() == processor.image_processor.to_dict()
    image = np.full((32, 32, 3), 128, np.uint8)
    a, b = (task.segment(image, ["cat", "dog"]).scores for task in (whole, found))
    assert np.array_equal(a, b)


def test_a_model_built_in_memory_has_no_tokenizer_and_says_so(checkpoint):
    model = FGCLIP2Model(FGCLIP2Model.from_pretrained(checkpoint).config)
    processor = FGCLIP2Processor.for_model(model)
    assert processor.tokenizer is None
    with pytest.raises(LabelError, match="no tokenizer"):
        processor(text="cat")
