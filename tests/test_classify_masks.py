"""MaskClassifier (one label per given mask), its tool, and segmentation by superpixels or objects."""

import json

import numpy as np
import pytest
import supervision as sv
import torch
from PIL import Image

from _train_helpers import REPO
from fgdense import Segmenter
from fgdense import MaskClassifier
from fgdense.errors import FGDenseError

LABELS = ["red circle", "blue square", "猫"]


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    pixels[8:40, 8:40] = (210, 35, 35)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint):
    return MaskClassifier.from_pretrained(tiny_checkpoint, device="cpu", max_num_patches=24, top_k=2)


def test_a_mask_on_whole_cells_scores_as_their_mean_feature(classifier, image):
    feats = classifier.image_features([image])[0]
    (h, w), (cell_h, cell_w) = feats.grid_size, feats.cell_size
    label = np.zeros((64, 96), np.int64)
    label[: int(round(cell_h)), : int(round(2 * cell_w))] = 5  # grid cells (0, 0) and (0, 1)
    label[int(round(cell_h)) :, :] = 2  # every cell of the rows below
    result = classifier.classify(image, label, LABELS, pooling="mask")
    text = classifier.label_embeddings(LABELS)
    expected = torch.nn.functional.normalize(torch.stack([feats.grid[1:].reshape(-1, feats.grid.shape[-1]).mean(0),
                                                          feats.grid[0, :2].mean(0)]), dim=-1) @ text.T
    # Label values in increasing order: 2 then 5.
    np.testing.assert_allclose(result.cosine, expected.numpy(), atol=1e-5)
    assert result.top_k.shape == (2, 2) and result.masks.shape == (2, 64, 96)
    # By default a mask is pooled from the box it covers: the same scores as box classification of those
    # boxes (its extent, one past the last pixel; result.boxes are supervision's inclusive ones).
    from fgdense import BoxClassifier
    from fgdense.segment import mask_extent

    extents = np.stack([mask_extent(m) for m in result.masks])
    assert np.array_equal(extents, result.boxes + [0, 0, 1, 1])
    boxes = BoxClassifier(classifier.model, classifier.processor, max_num_patches=24).classify(image, extents, LABELS)
    np.testing.assert_allclose(classifier.classify(image, label, LABELS).cosine, boxes.cosine, atol=1e-5)


def test_detections_in_detections_out(classifier, image):
    masks = np.zeros((2, 64, 96), bool)
    masks[0, 8:40, 8:40] = True
    masks[1, 50:60, 70:90] = True
    given = sv.Detections(xyxy=np.array([[8, 8, 40, 40], [70, 50, 90, 60]], float), mask=masks,
                          class_id=np.array([0, 0]), confidence=np.array([0.9, 0.8]), data={"class_name": ["a", "a"]})
    result = classifier.classify(image, given, LABELS)
    out = result.to_detections()
    assert (out.mask == masks).all() and list(out.data["detector_class_name"]) == ["a", "a"]
    assert list(out.data["class_name"]) == [LABELS[k] for k in result.top_k[:, 0]]
    payload = result.to_json()
    assert [m["area"] for m in payload["masks"]] == [32 * 32, 10 * 20]
    assert payload["masks"][0]["xyxy"] == [8.0, 8.0, 39.0, 39.0]  # first and last pixel, as supervision
    plain = classifier.classify(image, masks, LABELS).to_detections()
    assert np.array_equal(plain.xyxy, sv.mask_to_xyxy(masks))
    # The same masks as a plain array, and in a batch, give the same scores.
    np.testing.assert_allclose(classifier.classify(image, masks, LABELS).cosine, result.cosine, atol=1e-6)
    batch = classifier.classify_batch([image, image], [masks, masks[:1]], LABELS)
    np.testing.assert_allclose(batch[1].cosine, result.cosine[:1], atol=1e-6)


@pytest.mark.parametrize("masks, problem", [
    (np.zeros((1, 10, 10), bool), "need \\(N, 64, 96\\)"),
    (np.zeros((1, 64, 96), bool), "mask 0 is empty"),
    (sv.Detections(xyxy=np.zeros((1, 4))), "no mask"),
    (np.full((64, 96), 0.5), "whole numbers"),
])
def test_bad_masks_are_named(classifier, image, masks, problem):
    with pytest.raises(FGDenseError, match=problem):
        classifier.classify(image, masks, LABELS)


def test_the_tool_writes_json_and_picture_and_refuses_bad_input(tiny_checkpoint, image, tmp_path):
    import runpy

    main = runpy.run_path(str(REPO / "tools" / "classify_masks.py"))["main"]

    image.save(tmp_path / "img.png")
    label = np.zeros((64, 96), np.uint8)
    label[8:40, 8:40], label[50:60, 70:90] = 1, 3
    Image.fromarray(label).save(tmp_path / "labels.png")
    args = [str(tmp_path / "img.png"), "--masks", str(tmp_path / "labels.png"), "--labels", *LABELS,
            "--model", str(tiny_checkpoint), "--device", "cpu", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "out")]) == 0
    payload = json.loads((tmp_path / "out" / "img.json").read_text())
    assert len(payload["masks"]) == 2 and (tmp_path / "out" / "img.png").is_file()
    # The tool's own JSON reads back as masks.
    assert main([str(tmp_path / "img.png"), "--masks", str(tmp_path / "out" / "img.json"), "--labels", *LABELS,
                 "--model", str(tiny_checkpoint), "--device", "cpu", "--quiet", "--out", str(tmp_path / "again")]) == 0
    np.save(tmp_path / "wrong.npy", np.ones((1, 5, 5), bool))
    assert main(args[:2] + [str(tmp_path / "wrong.npy")] + args[3:] + ["--out", str(tmp_path / "bad")]) == 1
    assert not (tmp_path / "bad").exists()


def test_regions_decide_as_a_whole(tiny_checkpoint, image):
    segmenter = Segmenter.from_pretrained(tiny_checkpoint, device="cpu", max_num_patches=24, threshold=None)
    from fgdense.superpixels import superpixels

    result = segmenter.segment(image, LABELS, regions="superpixels")
    for region in np.unique(segments := superpixels(image)):
        assert len(np.unique(result.label_map[segments == region])) == 1
    # objects: a foreground piece smaller than half the image gets one label, that of its box's region.
    threshold = float(np.quantile(segmenter.segment(image, LABELS).scores.max(0), 0.7))
    objects = segmenter.segment(image, LABELS, regions="objects", threshold=threshold)
    pixels = segmenter.segment(image, LABELS, threshold=threshold)
    assert ((objects.label_map == -1) == (pixels.label_map == -1)).all()
    import cv2

    count, pieces = cv2.connectedComponents((objects.label_map >= 0).astype(np.uint8), connectivity=8)
    assert count > 1
    for k in range(1, count):
        assert len(np.unique(objects.label_map[pieces == k])) == 1
    with pytest.raises(FGDenseError, match="regions must be one of"):
        segmenter.segment(image, LABELS, regions="blobs")


def test_tool_help_names_the_modes():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "tools/segment.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert "superpixels" in out.stdout and "objects" in out.stdout


def test_a_label_image_of_background_only_gives_no_masks_not_a_crash(classifier, image):
    """segment.py's label map of an image where nothing was found is all zeros: no mask to classify."""
    result = classifier.classify(image, np.zeros((64, 96), np.int64), LABELS)
    assert result.masks.shape == (0, 64, 96) and result.top_k.shape[0] == 0
    assert result.to_json()["masks"] == [] and len(result.to_detections()) == 0
