"""Open-vocabulary segmentation: planted-signal recovery, background rules, detections, refinement."""

import numpy as np
import supervision as sv
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fgdense.dense import DenseFeatures, rgb_of
from fgdense.segment import BACKGROUND, Segmenter, guided_filter, mask_extent, mask_to_rle, mask_to_xyxy

GREY, RED, BLUE, GREEN = (128, 128, 128), (220, 30, 30), (30, 40, 220), (40, 200, 40)


def planted_scene(height=96, width=128):
    """A grey image with a red rectangle, a blue disc and a green square, and their true masks."""
    yy, xx = np.mgrid[:height, :width]
    red = (yy >= 12) & (yy < 52) & (xx >= 8) & (xx < 60)
    blue = (yy - 62) ** 2 + (xx - 92) ** 2 < 24 ** 2
    green = (yy >= 60) & (yy < 92) & (xx >= 4) & (xx < 36)
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = GREY
    for mask, colour in ((red, RED), (blue, BLUE), (green, GREEN)):
        pixels[mask] = colour
    return Image.fromarray(pixels), {"red": red, "blue": blue, "green": green}


class PlantedSegmenter(Segmenter):
    """A test double of the model: its dense features are known and image-dependent.

    Each planted colour owns a direction of an orthonormal basis; every grid cell's feature is the mix
    of directions in proportion to the pixels of each colour it covers (any other colour -> a spare
    direction). Label text embeddings are the directions of their colours; an unknown label gets another
    spare direction, unrelated to every region.
    """

    def __init__(self, colours: dict, cell: int = 4, dim: int = 16, **kwargs):
        super().__init__(model=None, **kwargs)
        self.colours = colours  # label -> RGB
        self.cell = cell
        basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)))
        self.basis = basis.T  # rows: orthonormal directions
        self.calls = {"images": 0, "labels": 0}

    def image_features(self, images, settings=None):
        self.calls["images"] += len(images)
        out = []
        for image in images:
            image = rgb_of(image)  # a path, PIL image or ProcessedImage, as the real model takes
            pixels = np.asarray(image, np.int16)
            masks = [np.all(np.abs(pixels - np.array(c)) < 10, axis=-1) for c in self.colours.values()]
            masks.append(~np.any(masks, axis=0))  # everything else
            h, w = max(1, image.height // self.cell), max(1, image.width // self.cell)
            fractions = torch.stack([torch.from_numpy(m.astype(np.float32)) for m in masks])[None]
            fractions = F.adaptive_avg_pool2d(fractions, (h, w))[0]  # (C + 1, h, w)
            grid = torch.einsum("chw,cd->hwd", fractions, self.basis[: len(masks)])
            out.append(DenseFeatures(grid, (image.height, image.width)))
        return out

    def label_embeddings(self, labels, settings=None):
        self.calls["labels"] += 1
        names = list(self.colours)
        rows = [names.index(label) if label in names else len(names) + 1 + i for i, label in enumerate(labels)]
        return self.basis[rows]


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture
def planted():
    image, truth = planted_scene()
    segmenter = PlantedSegmenter({"red": RED, "blue": BLUE, "green": GREEN}, threshold=0.5)
    return segmenter, image, truth


def test_planted_regions_are_recovered_and_the_rest_is_background(planted):
    segmenter, image, truth = planted
    result = segmenter.segment(image, ["red", "blue"])
    assert result.labels == ["red", "blue"] and result.image_size == (96, 128)
    assert result.scores.shape == (2, 96, 128) and result.scores.dtype == np.float32
    for k, name in enumerate(["red", "blue"]):
        assert iou(result.masks[k], truth[name]) > 0.9, name
    # Grey and the unlabelled green square stay background, not forced into a label.
    rest = ~(truth["red"] | truth["blue"])
    assert (result.label_map[rest] == BACKGROUND).mean() > 0.95
    assert (result.label_map[truth["green"]] == BACKGROUND).mean() > 0.9
    assert result.areas() == [int((result.label_map == k).sum()) for k in range(2)]
    means = result.mean_scores()
    assert means[0] > 0.9 and means[1] > 0.9


def test_without_threshold_every_pixel_is_forced_into_a_label(planted):
    segmenter, image, truth = planted
    result = segmenter.segment(image, ["red", "blue"], threshold=None)
    assert (result.label_map != BACKGROUND).all()


def test_explicit_background_labels_claim_their_regions(planted):
    """Without a threshold, background labels alone keep the grey and green pixels unlabelled."""
    _, image, truth = planted
    segmenter = PlantedSegmenter({"red": RED, "blue": BLUE, "green": GREEN, "grey": GREY})
    result = segmenter.segment(image, ["red", "blue"], threshold=None, background_labels=["green", "grey"])
    assert result.threshold is None and result.background_labels == ["green", "grey"]
    assert result.scores.shape[0] == 2
    for name in ("red", "blue"):
        assert iou(result.mask(name), truth[name]) > 0.9
    rest = ~(truth["red"] | truth["blue"])
    assert (result.label_map[rest] == BACKGROUND).mean() > 0.95


def test_absent_label_gets_no_pixels(planted):
    segmenter, image, truth = planted
    result = segmenter.segment(image, ["red", "a purple elephant"])
    assert result.areas()[1] == 0 and result.mean_scores()[1] is None
    assert iou(result.mask(0), truth["red"]) > 0.9


def test_detections_match_the_planted_regions(planted):
    segmenter, image, truth = planted
    result = segmenter.segment(image, ["red", "blue", "green"])
    dets = result.to_detections()
    assert len(dets) == 3
    assert list(dets.class_id) == [0, 1, 2]
    assert list(dets.data["class_name"]) == ["red", "blue", "green"]
    for i, name in enumerate(["red", "blue", "green"]):
        assert iou(dets.mask[i], truth[name]) > 0.9, name
        assert dets.confidence[i] == pytest.approx(result.scores[i][dets.mask[i]].mean())
        x0, y0, x1, y1 = dets.xyxy[i]
        rows, cols = np.nonzero(dets.mask[i])
        assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max(), rows.max())  # supervision's convention
    assert np.array_equal(dets.xyxy, sv.mask_to_xyxy(dets.mask))
    # The red rectangle's box is the planted one, to within the boundary blur.
    assert np.abs(dets.xyxy[0] - np.array([8, 12, 60, 52])).max() <= 3


def test_detections_split_connected_components():
    image, truth = planted_scene()
    pixels = np.asarray(image).copy()
    pixels[:, 100:] = GREY  # cut the blue disc off...
    pixels[10:30, 100:120] = BLUE  # ...and add a separate blue square: two blue components
    segmenter = PlantedSegmenter({"blue": BLUE}, threshold=0.5)
    result = segmenter.segment(Image.fromarray(pixels), ["blue"])
    assert len(result.to_detections()) == 1
    parts = result.to_detections(split_components=True)
    assert len(parts) == 2 and list(parts.class_id) == [0, 0]
    assert parts.mask.sum(0).max() == 1 and (parts.mask.any(0) == result.masks[0]).all()
    assert len(result.to_detections(split_components=True, min_area=10 ** 6)) == 0


def test_empty_detections_are_well_formed(planted):
    segmenter, image, _ = planted
    dets = segmenter.segment(image, ["nothing here"]).to_detections()
    assert len(dets) == 0 and dets.mask.shape == (0, 96, 128) and len(dets.data["class_name"]) == 0


def test_summary_rle_decodes_to_the_masks(planted):
    from pycocotools import mask as mask_utils

    segmenter, image, _ = planted
    result = segmenter.segment(image, ["red", "blue"])
    summary = result.to_json()
    assert summary["image_size_hw"] == [96, 128] and summary["threshold"] == 0.5
    for k, seg in enumerate(summary["segments"]):
        rle = {"size": seg["rle"]["size"], "counts": seg["rle"]["counts"].encode()}
        assert (mask_utils.decode(rle).astype(bool) == result.masks[k]).all()
        assert seg["area"] == result.areas()[k] and seg["label_map_value"] == k + 1
    assert summary["background_area"] + sum(s["area"] for s in summary["segments"]) == 96 * 128


def test_batch_equals_single_and_labels_are_encoded_once(planted):
    segmenter, image, _ = planted
    flipped = image.transpose(Image.FLIP_LEFT_RIGHT)
    batch = segmenter.segment_batch([image, flipped], ["red", "blue"])
    assert segmenter.calls == {"images": 2, "labels": 1}
    single = segmenter.segment(flipped, ["red", "blue"])
    assert (batch[1].label_map == single.label_map).all()
    assert (batch[1].label_map == batch[0].label_map[:, ::-1]).mean() > 0.97


@pytest.mark.parametrize("labels, message", [
    ([], "empty"), (["cat", "Cat"], "duplicate"), (["cat", " "], "blank"), (["cat", "|"], "empty"),
    (["cat", "do\tg"], "control characters"), (["c\x1bat"], "control characters"), ([3], "not a string"),
])
def test_bad_labels_raise_clear_errors(planted, labels, message):
    segmenter, image, _ = planted
    with pytest.raises(ValueError, match=message):
        segmenter.segment(image, labels)


@pytest.mark.parametrize("threshold", ["high", float("nan"), [0.5]])
def test_bad_threshold_raises_a_clear_error(planted, threshold):
    segmenter, image, _ = planted
    with pytest.raises(ValueError, match="threshold must be"):
        segmenter.segment(image, ["red"], threshold=threshold)


def test_label_that_is_also_a_background_label_is_an_error(planted):
    segmenter, image, _ = planted
    with pytest.raises(ValueError, match="duplicate"):
        segmenter.segment(image, ["red"], background_labels=["red"])


def test_guided_filter_snaps_a_blurred_edge_to_the_image_edge():
    guide = np.zeros((64, 64), np.float32)
    guide[:, 27:] = 1.0  # the true edge, off the 8-pixel cell grid
    coarse = F.interpolate(torch.from_numpy(guide)[None, None], size=(8, 8), mode="area")
    blurred = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)[0].numpy()
    refined = guided_filter(guide, blurred, radius=8, eps=1e-3)
    truth = guide > 0.5
    before = ((blurred[0] > 0.5) != truth).sum()
    after = ((refined[0] > 0.5) != truth).sum()
    assert after < before and after <= 64  # at most one column of pixels wrong


def test_refinement_improves_recovery_of_off_grid_regions():
    """8-pixel cells blur the boundaries (IoU under 0.95); the guided filter puts them back on the edges."""
    image, truth = planted_scene()
    segmenter = PlantedSegmenter({"red": RED, "blue": BLUE}, cell=8, threshold=0.5)
    plain = segmenter.segment(image, ["red", "blue"])
    refined = segmenter.segment(image, ["red", "blue"], refine=True)
    for k, name in enumerate(["red", "blue"]):
        assert iou(plain.masks[k], truth[name]) < 0.95, name
        assert iou(refined.masks[k], truth[name]) > 0.98, name


def test_mask_helpers():
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    assert list(mask_extent(mask)) == [2, 1, 6, 3]  # what RoIAlign pools: one past the last pixel
    # Detections' boxes agree with supervision's own reading of the same masks (last pixel included).
    assert list(mask_to_xyxy(mask)) == [2, 1, 5, 2]
    assert np.array_equal(mask_to_xyxy(mask), sv.mask_to_xyxy(mask[None])[0])
    assert mask_to_rle(mask)["size"] == [5, 7]


# ------------------------------------------------------------------------ the real model, tiny checkpoint
def test_real_tiny_model_segments_and_auto_threshold_is_the_sigmoid_midpoint(tiny_checkpoint):
    segmenter = Segmenter.from_pretrained(tiny_checkpoint, max_num_patches=64)
    image, _ = planted_scene()
    model = segmenter.model
    expected = float(-model.logit_bias.detach() / model.logit_scale.detach().exp())
    assert segmenter.auto_threshold() == pytest.approx(expected)
    prob = torch.sigmoid(model.logit_scale.detach().exp() * expected + model.logit_bias.detach())
    assert prob.item() == pytest.approx(0.5, abs=1e-5)
    result = segmenter.segment(image, ["电脑", "cat|猫"], threshold=None)
    assert result.scores.shape == (2, 96, 128) and np.isfinite(result.scores).all()
    assert np.abs(result.scores).max() <= 1 + 1e-5
    assert set(np.unique(result.label_map)) <= {0, 1}
    # The scores are the label embeddings' cosine with the dense features, upsampled.
    from fgdense.dense import dense_features
    from fgdense.prompts import TextEncoder

    feats = dense_features(model, image, segmenter.processor, max_num_patches=64)
    text = TextEncoder(model, segmenter.tokenizer)(["电脑", "cat|猫"])
    want = feats.upsample(feats.similarity(text)).numpy()
    assert np.allclose(result.scores, want, atol=1e-5)
    assert (result.label_map == want.argmax(0)).all()


def test_batch_size_images_a_pass_and_the_same_results(planted, capsys):
    """``batch_size`` is honoured: 5 images at 2 a pass are 3 feature passes, and the results equal one pass."""
    segmenter, image, _ = planted
    images = [image, image.transpose(Image.FLIP_LEFT_RIGHT), image, image.transpose(Image.FLIP_TOP_BOTTOM), image]
    passes = []
    original = segmenter.image_features
    segmenter.image_features = lambda chunk, settings=None: passes.append(len(chunk)) or original(chunk, settings)
    small = segmenter.segment_batch(images, ["red", "blue"], batch_size=2, progress=True)
    assert passes == [2, 2, 1]
    assert "segmenting" in capsys.readouterr().err  # the bar, when asked for and more than one pass
    passes.clear()
    whole = segmenter.segment_batch(images, ["red", "blue"], batch_size=8)
    assert passes == [5]
    for a, b in zip(small, whole):
        assert np.array_equal(a.label_map, b.label_map) and np.allclose(a.scores, b.scores)


def test_score_maps_beyond_the_memory_cap_are_refused_before_the_model(monkeypatch):
    """(labels, H, W) float32 maps over fgdense.segment.MAX_SCORE_BYTES: one line, the backbone never runs;
    at the cap the result is the one the default cap gives."""
    import fgdense.segment as segment_module
    from fgdense.errors import FGDenseError

    image, _ = planted_scene()  # 128 x 96: two labels and a background label take 4 * 3 * 96 * 128 bytes
    labels, need = ["red", "blue"], 4 * 3 * 96 * 128

    def segmenter():
        return PlantedSegmenter({"red": RED, "blue": BLUE, "green": GREEN}, threshold=None,
                                background_labels=["green"], regions="pixels")

    expected = segmenter().segment(image, labels)
    monkeypatch.setattr(segment_module, "MAX_SCORE_BYTES", need - 1)
    refused = segmenter()
    with pytest.raises(FGDenseError, match=r"a 128x96 image with 3 labels needs 0\.0 GB .* give at most 2 labels"):
        refused.segment(image, labels)
    assert refused.calls["images"] == 0
    monkeypatch.setattr(segment_module, "MAX_SCORE_BYTES", need)
    result = segmenter().segment(image, labels)
    assert (result.label_map == expected.label_map).all() and np.array_equal(result.scores, expected.scores)
