"""The fast dense path equals the official formulation; grids map onto image pixels."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.reference import official_dense_features
from conftest import FIXTURE, assert_close
from fgdense.dense import DenseFeatures, dense_features, dense_features_batch, dense_grids, pick_patch_budget


@pytest.mark.parametrize("proc, vis", [("proc12", "vis4"), ("proc13", "vis5"), ("proc0", "vis0")])
def test_fast_grids_equal_fixture_dense_features(ref_model, expected, manifest, proc, vis):
    values, shapes = expected[f"{proc}.pixel_values"], expected[f"{proc}.spatial_shapes"]
    grids = dense_grids(ref_model, values, shapes, max_batch_tokens=200)
    for index, grid in enumerate(grids):
        h, w = shapes[index].tolist()
        want = expected[f"{vis}.dense_features"][index, : h * w].reshape(h, w, -1)
        assert_close(grid, want, manifest["tolerances"]["features"], f"{vis} image {index}")


@pytest.mark.parametrize("sizes, budget", [([(64, 64)], 16), ([(64, 64), (48, 80), (96, 32)], 20)])
def test_fast_path_equals_official_formulation_on_random_images(ref_model, ref_processor, sizes, budget):
    """Random images with (several sizes) and without (one square image) padding."""
    rng = np.random.default_rng(len(sizes))
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    inputs = ref_processor(images, max_num_patches=budget, dynamic_max_patches=False)
    padded = not bool(inputs["pixel_attention_mask"].all())
    assert padded == (len(sizes) > 1)
    # The official path: padded batch, (B, 1, N, N) masks, nn.MultiheadAttention with a (B*heads, N, N) mask.
    official = official_dense_features(ref_model, inputs["pixel_values"], inputs["pixel_attention_mask"],
                                       inputs["spatial_shapes"])
    grids = dense_grids(ref_model, inputs["pixel_values"], inputs["spatial_shapes"])
    for index, grid in enumerate(grids):
        h, w = inputs["spatial_shapes"][index].tolist()
        assert torch.allclose(grid, official[index, : h * w].reshape(h, w, -1), atol=1e-5)


def test_dense_features_api_honours_budget_and_maps_cells(ref_model, ref_processor):
    image = Image.open(FIXTURE / "images" / "img1_200x120.png")
    feats = dense_features(ref_model, image, processor=ref_processor, max_num_patches=60)
    h, w = feats.grid_size
    assert h * w <= 60 and h * w > 40  # the budget asked for, not the dynamic 128
    assert feats.image_size == (120, 200)
    assert feats.cell_size == pytest.approx((120 / h, 200 / w))
    assert feats.grid.dtype == torch.float32
    maps = feats.similarity(torch.randn(3, 64))
    assert maps.shape == (3, h, w) and maps.abs().max() <= 1 + 1e-5
    assert feats.upsample(maps).shape == (3, 120, 200)
    # Batch of mixed sizes equals one-by-one.
    other = Image.open(FIXTURE / "images" / "img2_90x300.png")
    batch = dense_features_batch(ref_model, [image, other], processor=ref_processor, max_num_patches=60)
    assert torch.allclose(batch[0].grid, feats.grid, atol=1e-5)
    alone = dense_features(ref_model, other, processor=ref_processor, max_num_patches=60)
    assert torch.allclose(batch[1].grid, alone.grid, atol=1e-5)


def test_pick_patch_budget():
    assert pick_patch_budget(480, 640) == 16384
    assert pick_patch_budget(480, 640, max_patches=1024) == 1024
    assert pick_patch_budget(100, 100, short_edge=128) == 64


def test_boxes_to_grid():
    feats = DenseFeatures(torch.zeros(4, 8, 2), (40, 160))
    assert feats.boxes_to_grid([[0, 0, 160, 40], [20, 10, 40, 20]]).tolist() == [[0, 0, 8, 4], [1, 1, 2, 2]]


def test_region_embeddings_equal_official_region_features(ref_model, expected, manifest):
    case = next(c for c in manifest["cases"] if c["id"] == "vis4")
    values, shapes = expected["proc12.pixel_values"], expected["proc12.spatial_shapes"]
    for index, grid in enumerate(dense_grids(ref_model, values, shapes)):
        feats = DenseFeatures(grid, tuple(case["image_sizes_hw"][index]))
        got = feats.region_embeddings(case["boxes_xyxy"][index])
        assert_close(got, expected[case["region_features"][index]], manifest["tolerances"]["features"], f"image {index}")
