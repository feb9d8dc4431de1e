"""Box classification and grounding: equal to the official per-box computation, planted signals found."""

import numpy as np
import pytest
import supervision as sv
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.reference import official_region_features_per_box
from conftest import FIXTURE, assert_close
from fgdense.dense import DenseFeatures
from fgdense.errors import BoxError
from fgdense.processing import tokenize
from fgdense.classify import BoxClassifier
from fgdense.ground import Grounder, heatmap_proposals, walk_type_for
from fgdense.prompts import TextEncoder
from fgdense.regions import as_boxes

IMAGES = FIXTURE / "images"


# ------------------------------------------------------------------------- equivalence (real model)
def _awkward_boxes(width, height):
    """Whole image, partly outside on every side, sub-pixel and one-pixel boxes, a box on the far edge."""
    return [
        [0, 0, width, height],
        [-7.5, -3.25, width * 0.4, height * 0.6],
        [width * 0.6, height * 0.5, width + 11.0, height + 5.5],
        [width * 0.3, height * 0.3, width * 0.3 + 0.5, height * 0.3 + 0.75],
        [2, 3, 3, 4],
        [width - 1.5, height - 1.0, width, height],
        [width * 0.1, height * 0.45, width * 0.95, height * 0.55],
    ]


@pytest.fixture(scope="module")
def fixture_images():
    return [Image.open(IMAGES / name).convert("RGB") for name in
            ("img0_64x48.png", "img1_200x120.png", "img2_90x300.png", "img3_17x33.png")]


def test_one_pass_batched_regions_equalofficial_region_features_per_box(ref_model, ref_processor, ref_tokenizer, manifest,
                                                         fixture_images):
    classifier = BoxClassifier(ref_model, ref_processor, ref_tokenizer, batch_size=3)  # two chunks of images
    boxes = [_awkward_boxes(im.width, im.height) for im in fixture_images]
    got = classifier.region_features(fixture_images, boxes, progress=False)
    tolerance = manifest["tolerances"]["features"]
    for index, (image, image_boxes) in enumerate(zip(fixture_images, boxes)):
        want = official_region_features_per_box(ref_model, ref_processor, image, image_boxes)
        assert_close(got[index], want, tolerance, f"image {index}")


def test_explicit_patch_budget_equals_official_per_box_at_that_budget(ref_model, ref_processor, ref_tokenizer,
                                                                      manifest, fixture_images):
    classifier = BoxClassifier(ref_model, ref_processor, ref_tokenizer, max_num_patches=100)
    image = fixture_images[1]
    boxes = _awkward_boxes(image.width, image.height)
    got = classifier.region_features([image], [boxes], progress=False)[0]
    want = official_region_features_per_box(ref_model, ref_processor, image, boxes, max_num_patches=100, dynamic_max_patches=False)
    assert_close(got, want, manifest["tolerances"]["features"], "budget 100")
    default = BoxClassifier(ref_model, ref_processor, ref_tokenizer).region_features([image], [boxes])[0]
    assert (got - default).abs().max() > 1e-3  # the budget really changed the computation


def test_default_processing_reproduces_fixture_region_features(ref_model, ref_processor, ref_tokenizer, expected,
                                                              manifest):
    case = next(c for c in manifest["cases"] if c["id"] == "vis0")  # img0 with the checkpoint's defaults
    classifier = BoxClassifier(ref_model, ref_processor, ref_tokenizer)
    got = classifier.region_features([IMAGES / "img0_64x48.png"], case["boxes_xyxy"], progress=False)[0]
    assert_close(got, expected[case["region_features"][0]], manifest["tolerances"]["features"], "vis0")


def test_classify_scores_match_label_embeddings(ref_model, ref_processor, ref_tokenizer, fixture_images):
    classifier = BoxClassifier(ref_model, ref_processor, ref_tokenizer)
    image = fixture_images[1]
    boxes = _awkward_boxes(image.width, image.height)
    labels = ["cat", "猫|kitten", "red mug", "道路"]
    result = classifier.classify(image, boxes, labels, top_k=3)
    regions = F.normalize(classifier.region_features([image], [boxes], progress=False)[0], dim=-1)
    text = TextEncoder(ref_model, ref_tokenizer, "box")(labels)
    cosine = (regions @ text.T).numpy()
    np.testing.assert_allclose(result.cosine, cosine, atol=1e-5)
    probabilities = torch.softmax(100 * torch.from_numpy(cosine), -1).numpy()
    np.testing.assert_allclose(result.probabilities, probabilities, atol=1e-5)
    assert result.top_k.shape == (len(boxes), 3)
    assert (result.top_k[:, 0] == cosine.argmax(1)).all()
    assert list(result.to_detections().class_id) == list(cosine.argmax(1))
    assert list(result.to_detections().data["class_name"]) == [labels[j] for j in cosine.argmax(1)]
    # Label embeddings are cached: a second call encodes nothing new.
    cached = len(classifier.text_encoder("box")._cache)
    classifier.classify(image, boxes[:2], list(reversed(labels)))
    assert len(classifier.text_encoder("box")._cache) == cached


# ------------------------------------------------------------------------------ planted test double
DIM = 32
BASIS = torch.eye(DIM)


class PlantedEncoder(TextEncoder):
    """Known text embeddings: every prompt maps to a fixed vector."""

    def __init__(self, table):
        super().__init__(None, object(), "box")
        self.table = table

    def prompt_embeddings(self, prompts):
        return torch.stack([self.table[p] for p in prompts])


def planted_grid(h, w, plants, seed):
    """A (h, w, DIM) grid: background direction 0 plus noise, each plant's cells set to its direction."""
    gen = torch.Generator().manual_seed(seed)
    grid = BASIS[0] * 2.0 + 0.3 * torch.randn(h, w, DIM, generator=gen)
    for direction, (r0, c0, r1, c1) in plants:
        grid[r0:r1, c0:c1] = BASIS[direction] * 3.0 + 0.3 * torch.randn(r1 - r0, c1 - c0, DIM, generator=gen)
    return grid


class PlantedMixin:
    """Test double: the backbone's dense features are planted grids, looked up by image size."""

    def __init__(self, grids, tokenizer, **kwargs):
        super().__init__(None, object(), tokenizer, **kwargs)
        self.grids = grids  # (height, width) -> (h, w, D) grid
        self.encoded = 0
        self.planted_text = PlantedEncoder({name: BASIS[direction] for name, direction in NAMES.items()})

    def text_encoder(self, walk_type="box", settings=None):
        return self.planted_text

    def image_features(self, images, settings=None):
        self.encoded += len(images)
        return [DenseFeatures(self.grids[(im.height, im.width)], (im.height, im.width)) for im in images]


class PlantedClassifier(PlantedMixin, BoxClassifier):
    pass


class PlantedGrounder(PlantedMixin, Grounder):
    pass


LONG_PHRASE = "the small cat sitting on the left of the red mug near the window " * 8
NAMES = {"cat": 1, "猫": 1, "dog": 2, "red mug": 3, "一只狗": 2, "sky": 4, LONG_PHRASE: 3}
CELL = 10  # pixels per grid cell in the planted images


def _cells_to_box(r0, c0, r1, c1):
    return [c0 * CELL, r0 * CELL, c1 * CELL, r1 * CELL]


@pytest.fixture()
def planted(ref_tokenizer):
    layouts = {  # image (height, width) in pixels -> plants (direction, cells r0, c0, r1, c1)
        (120, 160): [(1, (1, 1, 5, 6)), (2, (6, 8, 11, 15)), (3, (1, 10, 4, 14))],
        (90, 200): [(3, (2, 2, 8, 7)), (4, (0, 12, 3, 20))],
        (60, 60): [(2, (1, 1, 5, 5))],
    }
    grids = {size: planted_grid(size[0] // CELL, size[1] // CELL, plants, seed=i)
             for i, (size, plants) in enumerate(layouts.items())}
    images = [np.zeros((h, w, 3), np.uint8) for h, w in layouts]
    boxes = [[_cells_to_box(*cells) for _, cells in plants] for plants in layouts.values()]
    truth = [[d for d, _ in plants] for plants in layouts.values()]
    return grids, images, boxes, truth, ref_tokenizer


def test_planted_every_box_gets_its_label(planted):
    grids, images, boxes, truth, tokenizer = planted
    classifier = PlantedClassifier(grids, tokenizer, batch_size=2)
    labels = ["sky", "cat|猫", "dog", "red mug"]
    direction_to_label = {4: 0, 1: 1, 2: 2, 3: 3}
    results = classifier.classify_batch(images, boxes, labels, top_k=2, progress=False)
    assert classifier.encoded == 3
    for result, want in zip(results, truth):
        assert list(result.top_k[:, 0]) == [direction_to_label[d] for d in want]
        assert (result.probabilities.max(1) > 0.99).all()
        assert list(result.to_detections().data["class_name"]) == [labels[direction_to_label[d]] for d in want]


def test_planted_detections_keep_detector_fields(planted):
    grids, images, boxes, truth, tokenizer = planted
    xyxy = np.asarray(boxes[0], dtype=np.float32)
    detections = sv.Detections(xyxy=xyxy, confidence=np.array([0.9, 0.8, 0.7]), class_id=np.array([7, 7, 7]),
                               tracker_id=np.array([11, 12, 13]), data={"class_name": np.array(["obj"] * 3),
                                                                        "track_age": np.array([1, 2, 3])})
    result = PlantedClassifier(grids, tokenizer).classify(images[0], detections, ["cat", "dog", "red mug"])
    out = result.to_detections()
    assert list(out.class_id) == [0, 1, 2] and list(out.data["class_name"]) == ["cat", "dog", "red mug"]
    np.testing.assert_array_equal(out.xyxy, xyxy)
    assert list(out.tracker_id) == [11, 12, 13] and list(out.data["track_age"]) == [1, 2, 3]
    assert list(out.data["detector_class_id"]) == [7, 7, 7]
    np.testing.assert_allclose(out.data["detector_confidence"], [0.9, 0.8, 0.7])
    np.testing.assert_allclose(out.confidence, result.probabilities.max(1), rtol=1e-6)


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_planted_grounding_with_candidate_boxes(planted):
    grids, images, boxes, truth, tokenizer = planted
    grounder = PlantedGrounder(grids, tokenizer)
    distractors = [[0, 0, 160, 120], [20, 70, 60, 110]]
    phrases = ["red mug", "一只狗", "cat", LONG_PHRASE]
    result = grounder.ground(images[0], phrases, boxes=boxes[0] + distractors)
    assert result.walk_types == ["box", "box", "box", "long"]
    assert list(result.best_indices) == [2, 1, 0, 2]
    assert result.scores.shape == (4, 5)
    np.testing.assert_allclose(result.best_boxes, np.asarray(boxes[0])[[2, 1, 0, 2]])
    assert (result.best_scores > 0.9).all()
    assert list(result.to_detections().data["class_name"]) == phrases
    # Candidate boxes given as Detections: each phrase's winner keeps its detector fields.
    candidates = sv.Detections(xyxy=np.asarray(boxes[0] + distractors, dtype=np.float32),
                               tracker_id=np.arange(100, 105))
    found = grounder.ground(images[0], phrases, boxes=candidates).to_detections()
    assert list(found.tracker_id) == [102, 101, 100, 102] and list(found.class_id) == [0, 1, 2, 3]


def test_planted_grounding_proposals_find_the_region(planted):
    grids, images, boxes, truth, tokenizer = planted
    grounder = PlantedGrounder(grids, tokenizer)
    # Phrases in another order than the planted boxes (cat, dog, red mug), so a phrase/box index mix-up fails.
    result = grounder.ground(images[0], ["red mug", "cat", "dog"])
    assert result.boxes is None and result.heatmaps().shape == (3, 120, 160)
    assert all(isinstance(v, np.ndarray) for v in (result.grid_heatmaps, result.best_boxes, result.best_scores))
    for phrase_index, box in enumerate([boxes[0][2], boxes[0][0], boxes[0][1]]):
        found = result.best_boxes[phrase_index]
        assert _iou(found, box) > 0.8, (found, box)
        assert result.best_scores[phrase_index] > 0.9
        assert result.proposal_scores[phrase_index][0] == result.best_scores[phrase_index]
    assert len(result.to_detections()) == 3


def test_planted_proposals_for_a_region_at_the_image_border(planted):
    grids, images, boxes, truth, tokenizer = planted
    result = PlantedGrounder(grids, tokenizer).ground(images[1], ["sky"])
    assert _iou(result.best_boxes[0], boxes[1][1]) > 0.8


# ------------------------------------------------------------------------------------- pieces
def test_heatmap_proposals_two_blobs_and_noise():
    heat = np.zeros((50, 80))
    heat[5:20, 10:30] = 1.0
    heat[30:45, 50:75] = 0.8
    heat[0, 79] = 0.9  # one stray pixel: below the minimum area
    boxes = heatmap_proposals(heat, threshold=0.5, min_area_fraction=0.001)
    np.testing.assert_array_equal(boxes, [[50, 30, 75, 45], [10, 5, 30, 20]])  # larger mass first
    assert len(heatmap_proposals(heat, threshold=0.9)) == 1
    np.testing.assert_array_equal(heatmap_proposals(heat), boxes)  # Otsu splits blobs from background
    np.testing.assert_array_equal(heatmap_proposals(np.full((4, 6), 0.3)), [[0, 0, 6, 4]])
    with pytest.raises(ValueError, match="threshold"):
        heatmap_proposals(heat, threshold=1.5)


def test_walk_type_rule_box_exactly_when_the_box_walk_keeps_every_token(ref_tokenizer):
    seen = set()
    for words in range(10, 80, 3):
        phrase = " ".join(["red mug"] * words)
        full = ref_tokenizer(phrase)["input_ids"]
        box_ids = tokenize(ref_tokenizer, phrase, "box")["input_ids"][0].tolist()
        kept_whole = box_ids[: len(full)] == full
        walk = walk_type_for(ref_tokenizer, phrase)
        assert (walk == "box") == kept_whole, words
        seen.add(walk)
    assert seen == {"box", "long"}


# ------------------------------------------------------------------------------------- bad input
def test_empty_box_lists_give_empty_results(planted):
    grids, images, boxes, truth, tokenizer = planted
    classifier = PlantedClassifier(grids, tokenizer)
    for empty in ([], np.zeros((0, 4)), sv.Detections.empty()):
        result = classifier.classify(images[0], empty, ["cat", "dog"], top_k=5)
        assert result.cosine.shape == (0, 2) and result.probabilities.shape == (0, 2) and result.top_k.shape == (0, 2)
        assert len(result.to_detections()) == 0 and result.top_labels == []
    assert classifier.encoded == 0  # nothing to pool: the backbone is not run
    batch = classifier.classify_batch(images, [boxes[0], [], boxes[2]], ["cat", "dog"], progress=False)
    assert [len(r.to_detections()) for r in batch] == [3, 0, 1] and classifier.encoded == 2
    grounding = PlantedGrounder(grids, tokenizer).ground(images[0], ["cat"], boxes=[])
    assert grounding.scores.shape == (1, 0) and list(grounding.best_indices) == [-1]
    assert len(grounding.to_detections()) == 0 and grounding.to_json()["phrases"][0]["box"] is None


def test_empty_region_features_on_the_real_model(ref_model, ref_processor, ref_tokenizer):
    regions = BoxClassifier(ref_model, ref_processor, ref_tokenizer).region_features([IMAGES / "img0_64x48.png"], [[]])
    assert regions[0].shape == (0, ref_model.config.projection_dim)


@pytest.mark.parametrize("bad, message", [
    ([[0, 0, 10, 10], [1, 2, float("nan"), 4]], "box 1 has a non-finite"),
    ([[0, 0, 10, 10], [1, 2, 3, 4], [0, float("inf"), 5, 5]], "box 2 has a non-finite"),
    ([[0, 0, 1e300, 1e300]], "box 0 has a coordinate beyond 1e\\+07 pixels"),  # float32 would make it inf
    ([[5, 5, 2, 9]], "box 0 is inverted"),
    ([[0, 0, 10, 10], [3, 9, 8, 1]], "box 1 is inverted"),
    ([[1, 2, 3]], r"\(N, 4\)"),
])
def test_bad_boxes_name_the_box_and_stop_before_the_backbone(planted, bad, message):
    grids, images, boxes, truth, tokenizer = planted
    classifier = PlantedClassifier(grids, tokenizer)
    with pytest.raises(BoxError, match=message):
        classifier.classify(images[0], bad, ["cat"])
    grounder = PlantedGrounder(grids, tokenizer)
    with pytest.raises(BoxError, match=message):
        grounder.ground(images[0], ["cat"], boxes=bad)
    assert classifier.encoded == 0 and grounder.encoded == 0


def test_bad_box_in_a_batch_names_its_image(planted):
    grids, images, boxes, truth, tokenizer = planted
    classifier = PlantedClassifier(grids, tokenizer)
    with pytest.raises(BoxError, match="image 1 box 0 is inverted"):
        classifier.classify_batch(images, [boxes[0], [[9, 9, 1, 1]], boxes[2]], ["cat"])
    assert classifier.encoded == 0


def test_empty_labels_phrases_and_mismatched_lists(planted):
    grids, images, boxes, truth, tokenizer = planted
    classifier = PlantedClassifier(grids, tokenizer)
    with pytest.raises(ValueError, match="empty label list"):
        classifier.classify(images[0], boxes[0], [])
    with pytest.raises(ValueError, match="'  ' is blank"):
        classifier.classify(images[0], boxes[0], ["cat", "  "])
    with pytest.raises(ValueError, match="3 images but 2 box lists"):
        classifier.classify_batch(images, boxes[:2], ["cat"])
    with pytest.raises(ValueError, match="top_k"):
        classifier.classify(images[0], boxes[0], ["cat"], top_k=0)
    grounder = PlantedGrounder(grids, tokenizer)
    with pytest.raises(ValueError, match="empty phrase list"):
        grounder.ground(images[0], [])
    with pytest.raises(ValueError, match="phrase ' ' is blank"):
        grounder.ground(images[0], ["cat", " "])
    assert classifier.encoded == 0 and grounder.encoded == 0


def test_as_boxes_accepts_arrays_tensors_and_detections():
    array, source = as_boxes(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert array.dtype == np.float64 and source is None and array.tolist() == [[1, 2, 3, 4]]
    detections = sv.Detections(xyxy=np.array([[1, 2, 3, 4.0]]))
    assert as_boxes(detections)[1] is detections
    with pytest.raises(BoxError, match="ragged"):
        as_boxes([[1, 2, 3, 4], [1, 2]])
