import pytest
import torch

from fgdense.prompts import TextEncoder, check_labels, expand_prompts, split_synonyms
from fgdense import encode_text


def test_synonyms_and_templates():
    assert split_synonyms("cat| 猫 |") == ["cat", "猫"]
    assert expand_prompts("cat", True)[1] == "a photo of a cat."
    assert expand_prompts("猫", True)[1] == "一张猫的照片"
    assert expand_prompts("cat", ["{} here"]) == ["cat here"]


@pytest.mark.parametrize("labels, message", [([], "empty label list"), (["cat", "Cat"], "duplicate label"), (["|"], "empty")])
def test_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        check_labels(labels)


def test_label_encoder_averages_and_caches(ref_model, ref_tokenizer):
    encoder = TextEncoder(ref_model, ref_tokenizer)
    both = encoder(["cat|猫", "电脑"])
    cat, mao = encode_text(ref_model, ref_tokenizer, ["cat", "猫"], walk_type="box")
    want = torch.nn.functional.normalize((cat + mao) / 2, dim=0)
    assert torch.allclose(both[0], want, atol=1e-6)
    assert len(encoder._cache) == 3
    encoder(["电脑"])
    assert len(encoder._cache) == 3  # cached, not re-encoded
