"""User mistakes get clear errors naming the problem; every weight format loads the same model."""

import json
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import FIXTURE
from fgdense import BoxError, CheckpointError, FGCLIP2Model, ImageLoadError, tokenize


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_nonexistent_checkpoint_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        FGCLIP2Model.from_pretrained(tmp_path / "nope")


def test_hub_id_offline_says_how_to_pass_a_folder(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="local folder") as info:
        FGCLIP2Model.from_pretrained("qihoo360/fg-clip2-nonexistent-test")
    assert "\n" not in str(info.value)


def test_config_of_another_model_type(ckpt_copy):
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["model_type"] = "bert"
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type 'bert'"):
        FGCLIP2Model.from_pretrained(ckpt_copy)


def test_unknown_config_keys_are_tolerated(ckpt_copy, ref_model):
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["some_future_key"] = 1
    config["vision_config"]["another_new_key"] = "x"
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    assert _same_weights(FGCLIP2Model.from_pretrained(ckpt_copy), ref_model)


def test_truncated_safetensors(ckpt_copy):
    weights = ckpt_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or corrupt"):
        FGCLIP2Model.from_pretrained(ckpt_copy)


def test_missing_and_misshaped_parameters_are_listed(ckpt_copy):
    state = load_file(str(ckpt_copy / "model.safetensors"))
    del state["boxtext_head.bias"]
    state["longtext_head.weight"] = torch.zeros(3, 3)
    save_file(state, str(ckpt_copy / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        FGCLIP2Model.from_pretrained(ckpt_copy)
    assert "boxtext_head.bias" in str(info.value) and "longtext_head.weight" in str(info.value)


def test_training_extras_ignored_other_extras_reported(ckpt_copy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the released extras logit_scale_finegraind/_hardneg: silent
        FGCLIP2Model.from_pretrained(ckpt_copy)
    state = load_file(str(ckpt_copy / "model.safetensors"))
    state["surprise.weight"] = torch.zeros(2)
    save_file(state, str(ckpt_copy / "model.safetensors"))
    with pytest.warns(UserWarning, match="surprise.weight"):
        FGCLIP2Model.from_pretrained(ckpt_copy)


def test_pytorch_bin_and_sharded_safetensors_load_the_same(ckpt_copy, ref_model, tmp_path):
    state = load_file(str(ckpt_copy / "model.safetensors"))
    bin_dir = tmp_path / "bin"
    shutil.copytree(ckpt_copy, bin_dir)
    (bin_dir / "model.safetensors").unlink()
    torch.save(state, bin_dir / "pytorch_model.bin")
    assert _same_weights(FGCLIP2Model.from_pretrained(bin_dir), ref_model)

    shard_dir = tmp_path / "sharded"
    shutil.copytree(ckpt_copy, shard_dir)
    (shard_dir / "model.safetensors").unlink()
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    weight_map = {}
    for name, part in halves.items():
        save_file({k: state[k] for k in part}, str(shard_dir / name))
        weight_map.update({k: name for k in part})
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert _same_weights(FGCLIP2Model.from_pretrained(shard_dir), ref_model)


def test_unknown_walk_type(ref_model, expected):
    with pytest.raises(ValueError, match="unknown walk_type 'medium'"):
        ref_model.get_text_features(expected["text.box.mask.input_ids"], walk_type="medium")


def test_empty_caption_list(ref_tokenizer, ref_model):
    from fgdense import encode_text

    with pytest.raises(ValueError, match="empty caption list"):
        tokenize(ref_tokenizer, [], "short")
    with pytest.raises(ValueError, match="empty caption list"):
        encode_text(ref_model, ref_tokenizer, [])


def _regions(model, expected, boxes):
    inputs = [expected[f"proc0.{k}"] for k in ("pixel_values", "pixel_attention_mask", "spatial_shapes")]
    with torch.no_grad():
        return model.get_image_region_features(*inputs, image_sizes=[(48, 64)], region_infos=[boxes])


@pytest.mark.parametrize("box, message", [
    ([10, 10, 10, 30], "zero area"),
    ([70, 10, 90, 30], "entirely outside"),
    ([30, 10, 20, 30], "inverted"),
    ([float("nan"), 10, 20, 30], "non-finite"),
])
def test_bad_boxes_raise_naming_the_box(ref_model, expected, box, message):
    with pytest.raises(BoxError, match=f"box 1 .*{message}"):
        _regions(ref_model, expected, [[0, 0, 64, 48], box])


def test_box_partly_outside_is_clipped(ref_model, expected):
    outside, clipped = _regions(ref_model, expected, [[-20, 10, 40, 60], [0, 10, 40, 48]])[0]
    assert torch.allclose(outside, clipped)


def test_missing_image_and_non_image(tmp_path, ref_processor):
    with pytest.raises(ImageLoadError, match="does not exist"):
        ref_processor(tmp_path / "missing.png")
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="cannot read .*notes.png"):
        ref_processor(bad)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes((FIXTURE / "images" / "img1_200x120.png").read_bytes()[:500])
    with pytest.raises(ImageLoadError, match="cut.png"):
        ref_processor(truncated)


def test_hub_download_fetches_no_code(monkeypatch, ckpt_copy, ref_model):
    """A hub id is fetched with patterns that match weights/config/tokenizer files, never *.py."""
    import fnmatch

    import huggingface_hub

    from fgdense.checkpoint import HUB_ALLOW_PATTERNS

    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        return str(ckpt_copy)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = FGCLIP2Model.from_pretrained("qihoo360/fg-clip2-base")
    assert calls == [("qihoo360/fg-clip2-base", HUB_ALLOW_PATTERNS)]
    assert _same_weights(model, ref_model)
    wanted = ["config.json", "model.safetensors", "model-00001-of-00002.safetensors", "tokenizer.json",
              "tokenizer_config.json", "preprocessor_config.json", "special_tokens_map.json"]
    for name in wanted:
        assert any(fnmatch.fnmatch(name, p) for p in HUB_ALLOW_PATTERNS), name
    for code in ["modeling_fgclip2.py", "configuration_fgclip2.py", "image_processing_fgclip2.py"]:
        assert not any(fnmatch.fnmatch(code, p) for p in HUB_ALLOW_PATTERNS), code


@pytest.mark.parametrize("tower, key, value", [
    ("vision_config", "num_hidden_layers", 1_000_000), ("text_config", "hidden_size", 10**6),
    ("text_config", "vocab_size", 10**9), ("vision_config", "num_attention_heads", 0),
    ("text_config", "max_position_embeddings", 10**7), ("vision_config", "intermediate_size", "big"),
    ("vision_config", "hidden_size", 102),  # not a multiple of the 4 heads
])
def test_absurd_config_sizes_are_refused_before_anything_is_built(ckpt_copy, tower, key, value):
    import time

    config = json.loads((ckpt_copy / "config.json").read_text())
    config[tower][key] = value
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        FGCLIP2Model.from_pretrained(ckpt_copy)
    assert time.perf_counter() - start < 2  # refused from the numbers, not after minutes of allocation
    message = str(info.value)
    assert key in message and "config.json" in message and len(message) < 400 and "\n" not in message


def test_a_pickle_that_would_run_code_is_refused_without_advising_unsafe_loading(ckpt_copy, tmp_path):
    import pickle

    (ckpt_copy / "model.safetensors").unlink()

    class Sneaky:
        def __reduce__(self):
            return (print, ("this would run",))

    with open(ckpt_copy / "pytorch_model.bin", "wb") as f:
        pickle.dump({"w": Sneaky()}, f)
    with pytest.raises(CheckpointError) as info:
        FGCLIP2Model.from_pretrained(ckpt_copy)
    message = str(info.value)
    assert "refuses" in message and "weights_only=False" not in message and "weights_only" not in message
