"""A checkpoint folder is data from outside: a shard index never reads beside the folder, and a config or
weights that cannot compute (unknown activation, integer or non-finite weights) are refused at load,
in one message naming the file, instead of failing later or scoring NaN."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fgdense import CheckpointError, FGCLIP2Model


def _shard(folder, shard_path, name_in_index):
    """Move the weights of ``folder`` into one shard at ``shard_path``, named in the index as given."""
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    shard_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(shard_path))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: name_in_index for k in state}}))


@pytest.mark.parametrize("absolute", [False, True], ids=["dotdot", "absolute"])
def test_a_shard_index_naming_a_file_outside_the_folder_is_refused(ckpt_copy, tmp_path, absolute):
    elsewhere = tmp_path / "elsewhere" / "x.safetensors"
    _shard(ckpt_copy, elsewhere, str(elsewhere) if absolute else "../elsewhere/x.safetensors")
    with pytest.raises(CheckpointError, match="outside the checkpoint folder") as info:
        FGCLIP2Model.from_pretrained(ckpt_copy)
    assert "\n" not in str(info.value) and "model.safetensors.index.json" in str(info.value)


def test_a_shard_inside_the_folder_still_loads(ckpt_copy, ref_model):
    _shard(ckpt_copy, ckpt_copy / "shards" / "a.safetensors", "shards/./a.safetensors")
    model = FGCLIP2Model.from_pretrained(ckpt_copy)
    assert torch.equal(model.logit_scale, ref_model.logit_scale)


def test_an_unknown_activation_is_refused_at_load(ckpt_copy):
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["vision_config"]["hidden_act"] = "no_such_act"
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"vision_config.hidden_act = 'no_such_act' is not an activation"):
        FGCLIP2Model.from_pretrained(ckpt_copy)


def _edit_weight(folder, change):
    state = load_file(str(folder / "model.safetensors"))
    key = "vision_model.post_layernorm.weight"
    state[key] = change(state[key])
    save_file(state, str(folder / "model.safetensors"))
    return key


def test_integer_weights_are_refused_at_load(ckpt_copy):
    key = _edit_weight(ckpt_copy, lambda w: w.to(torch.int32))
    with pytest.raises(CheckpointError, match=f"not floating point: {key} \\(int32\\)"):
        FGCLIP2Model.from_pretrained(ckpt_copy)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(ckpt_copy, value):
    key = _edit_weight(ckpt_copy, lambda w: torch.where(torch.arange(len(w)) == 3, torch.tensor(value), w))
    with pytest.raises(CheckpointError, match=f"non-finite weights \\(NaN or infinity\\) in {key}"):
        FGCLIP2Model.from_pretrained(ckpt_copy)


def test_a_tool_given_non_finite_weights_says_so_in_one_line(tmp_path, tiny_checkpoint, capsys):
    """Before, a segmentation of every image came out NaN, exit 0; now the tool stops at the model."""
    import importlib.util

    from PIL import Image

    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    key = _edit_weight(broken, lambda w: torch.full_like(w, float("nan")))
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "a.png")
    spec = importlib.util.spec_from_file_location("segment_tool", Path(__file__).parents[1] / "tools" / "segment.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    code = tool.main([str(tmp_path / "a.png"), "--labels", "red", "--model", str(broken), "--out", str(tmp_path / "out"),
                      "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith(f"error: {broken} holds non-finite weights (NaN or infinity) in {key}")
    assert not any((tmp_path / "out").glob("*.json"))
