"""Every PIL mode, EXIF orientation and the dynamic-budget warning."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fgdense import FGCLIP2ImageProcessor, load_image
from fgdense.processing import dynamic_budget

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "CMYK", "1", "F"])
def test_every_mode_becomes_rgb(mode, tmp_path):
    image = Image.fromarray(RGB).convert(mode if mode not in ("I;16", "F") else "L")
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image).astype(np.uint16) * 257))
        assert image.mode == "I;16"
    if mode == "F":
        image = image.convert("F")
    loaded = load_image(image)
    assert loaded.mode == "RGB" and loaded.size == (56, 40)
    if mode in ("L", "I;16", "F"):  # greyscale keeps its values (16-bit scaled down to 8)
        grey = np.asarray(Image.fromarray(RGB).convert("L"), dtype=int)
        assert np.abs(np.asarray(loaded, dtype=int)[..., 0] - grey).max() <= 1
    path = tmp_path / f"img.{'tiff' if mode in ('I;16', 'F', 'CMYK') else 'png'}"
    image.save(path)
    out = FGCLIP2ImageProcessor()(path, max_num_patches=16, dynamic_max_patches=False)
    assert out["pixel_values"].shape == (1, 16, 768)


def test_transparency_composited_on_white():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    loaded = np.asarray(load_image(Image.fromarray(rgba, "RGBA")))
    assert (loaded == 255).all()  # alpha 0 everywhere: pure white, as transformers' convert_to_rgb


def test_exif_orientation_applied(tmp_path):
    image = Image.fromarray(RGB)  # 56 wide, 40 high
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (40, 56)


def test_dynamic_budget_buckets():
    assert dynamic_budget(48, 64) == 128
    assert dynamic_budget(16 * 12, 16 * 12) == 256  # 144 patches
    assert dynamic_budget(2048, 2048) == 1024


def test_overridden_budget_warns_and_explicit_budget_is_honoured():
    processor = FGCLIP2ImageProcessor(max_num_patches=256)
    image = Image.fromarray(RGB)
    with pytest.warns(UserWarning, match="max_num_patches=1024 is replaced by 128"):
        out = processor(image, max_num_patches=1024)
    assert out["pixel_values"].shape[1] == 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = processor(image, max_num_patches=1024, dynamic_max_patches=False)
    assert out["pixel_values"].shape[1] == 1024


def test_processor_round_trip(tmp_path):
    processor = FGCLIP2ImageProcessor(max_num_patches=576, dynamic_max_patches=False)
    processor.save_pretrained(tmp_path)
    again = FGCLIP2ImageProcessor.from_pretrained(tmp_path)
    assert again.max_num_patches == 576 and again.dynamic_max_patches is False


def test_make_tiny_checkpoint_tool(tmp_path):
    """The tool writes a folder every loader accepts, and bilingual text encodes without unknowns."""
    from fgdense import FGCLIP2Model, encode_text, load_tokenizer

    out = tmp_path / "tiny"
    subprocess.run([sys.executable, "tools/make_tiny_checkpoint.py", str(out), "--seed", "3"], check=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    model = FGCLIP2Model.from_pretrained(out)
    tokenizer = load_tokenizer(out)
    processor = FGCLIP2ImageProcessor.from_pretrained(out)
    assert tokenizer.unk_token_id not in tokenizer("电脑 cat 红色的杯子")["input_ids"]
    feats = encode_text(model, tokenizer, ["电脑", "cat"], walk_type="box")
    assert feats.shape == (2, 64) and torch.allclose(feats.norm(dim=-1), torch.ones(2))
    inputs = processor(Image.fromarray(RGB))
    with torch.no_grad():
        dense = model.get_image_dense_feature(**inputs)
    assert dense.shape == (1, 128, 64) and torch.isfinite(dense).all()


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_exif_rotation_applied_once_however_often_loaded(mode, tmp_path):
    image = Image.fromarray(RGB).convert(mode)  # 56 wide, 40 high
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    once = load_image(path)
    assert once.size == (40, 56)
    assert load_image(once).size == (40, 56) and load_image(once.copy()).size == (40, 56)


def test_sixteen_bit_arrays_are_scaled_not_clipped():
    grey = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # up to 63000 of 65535
    loaded = np.asarray(load_image(grey))
    assert loaded.max() == round(63000 / 65535 * 255) and loaded.min() == 0
