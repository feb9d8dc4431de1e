"""The GPU's precision paths, run on the CPU: bf16 autocast over an fp32 model (what ``--precision auto`` does
on CUDA) and bf16 weights (``dtype=torch.bfloat16``), each through every task and the box-classification
evaluation, compared with fp32.

Stated tolerance: every cosine score (per pixel after interpolation and the guided filter, per box after
RoIAlign, per phrase) within COSINE_TOLERANCE of fp32's; a discrete decision (a pixel's label, a box's best
label, an annotation's top-1 category) equal to fp32's wherever fp32's own margin between its best and
second-best choice is more than twice that, i.e. where rounding cannot decide (and segmentation label maps
equal on 99 % of all pixels, near-ties included). Measured on these tiny checkpoints: scores at most 0.004
apart, label maps equal everywhere; the base architecture's dense pass: 0.0008
(benchmarks/benchmark_precision.py).
"""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CHECKPOINT
from fgdense import BoxClassifier, FGCLIP2Model, Grounder, Segmenter

COSINE_TOLERANCE = 0.01
PATHS = {"bf16 autocast": (None, "bf16"), "bf16 weights": (torch.bfloat16, "auto")}


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((200, 150))


def build(task, checkpoint, path, **settings):
    dtype, precision = (None, "fp32") if path == "fp32" else PATHS[path]
    return task.from_pretrained(checkpoint, device="cpu", dtype=dtype, precision=precision, **settings)


def margin_of(scores: np.ndarray, axis: int) -> np.ndarray:
    """Best minus second-best along ``axis``."""
    top = np.sort(scores, axis=axis)
    return np.take(top, -1, axis=axis) - np.take(top, -2, axis=axis)


def same_where_clear(decided, reference, scores, axis):
    clear = margin_of(scores, axis) > 2 * COSINE_TOLERANCE
    return bool((np.asarray(decided)[clear] == np.asarray(reference)[clear]).all()), float(clear.mean())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("checkpoint", ["tiny", "reference"])
def test_segmenter_with_interpolation_and_the_guided_filter(photo, tiny_checkpoint, path, checkpoint):
    ckpt = tiny_checkpoint if checkpoint == "tiny" else CHECKPOINT
    labels = ["cat", "电脑", "grass"]
    settings = dict(threshold=None, refine=True, max_num_patches=64)
    reference = build(Segmenter, ckpt, "fp32", **settings).segment(photo, labels)
    result = build(Segmenter, ckpt, path, **settings).segment(photo, labels)
    assert result.scores.dtype == np.float32 and result.scores.shape == reference.scores.shape == (3, 150, 200)
    assert np.abs(result.scores - reference.scores).max() <= COSINE_TOLERANCE
    same, clear = same_where_clear(result.label_map, reference.label_map, reference.scores, axis=0)
    assert same and (checkpoint == "reference" or clear > 0.5)  # the reference checkpoint's labels all nearly tie
    # Even where the labels nearly tie, rounding flips almost none (measured: none).
    assert (result.label_map == reference.label_map).mean() >= 0.99


@pytest.mark.parametrize("path", PATHS)
def test_box_classifier_through_roi_align(photo, tiny_checkpoint, path):
    boxes = [[10, 10, 120, 100], [50, 40, 190, 140], [0, 0, 30, 30], [100.5, 20.25, 101.5, 21.25]]
    labels = ["cat", "dog", "car", "杯子"]
    reference = build(BoxClassifier, tiny_checkpoint, "fp32").classify(photo, boxes, labels)
    result = build(BoxClassifier, tiny_checkpoint, path).classify(photo, boxes, labels)
    assert np.abs(result.cosine - reference.cosine).max() <= COSINE_TOLERANCE
    same, _ = same_where_clear(result.top_k[:, 0], reference.top_k[:, 0], reference.cosine, axis=1)
    assert same


@pytest.mark.parametrize("path", PATHS)
def test_grounder_with_candidate_boxes_and_proposals(photo, tiny_checkpoint, path):
    phrases = ["a cat", "一只猫", "the grass on the left"]
    boxes = [[10, 10, 120, 100], [50, 40, 190, 140], [0, 0, 60, 60]]
    fp32, other = build(Grounder, tiny_checkpoint, "fp32"), build(Grounder, tiny_checkpoint, path)
    reference, result = fp32.ground(photo, phrases, boxes=boxes), other.ground(photo, phrases, boxes=boxes)
    assert np.abs(result.scores - reference.scores).max() <= COSINE_TOLERANCE
    same, _ = same_where_clear(result.best_indices, reference.best_indices, reference.scores, axis=1)
    assert same
    reference, result = fp32.ground(photo, phrases), other.ground(photo, phrases)  # proposals from the heatmaps
    assert np.abs(result.grid_heatmaps - reference.grid_heatmaps).max() <= COSINE_TOLERANCE
    assert np.abs(result.heatmaps() - reference.heatmaps()).max() <= COSINE_TOLERANCE
    assert all(len(p) for p in result.proposals)


@pytest.mark.parametrize("path", PATHS)
def test_box_classification_evaluation(tmp_path, path):
    from fgdense.classify import BoxClassifier
    from fgdense.evaluation import evaluate_box_classification
    from test_eval_boxclass import make_dataset, read_predictions

    ann, images_dir = make_dataset(tmp_path / "data")
    dtype, precision = PATHS[path]
    outcomes = {}
    for name, model, how in (("fp32", FGCLIP2Model.from_pretrained(CHECKPOINT), "fp32"),
                             (path, FGCLIP2Model.from_pretrained(CHECKPOINT, dtype=dtype), precision)):
        predictions = tmp_path / name / "predictions.jsonl"
        report = evaluate_box_classification(BoxClassifier(model, precision=how), ann, images_dir,
                                             out=tmp_path / name, progress=False)
        header, records = read_predictions(predictions)
        assert header["fgdense_boxclass_predictions"]["precision"] == how
        outcomes[name] = (report, {r["annotation_id"]: r for r in records if "top5" in r})
    (reference, expected), (report, got) = outcomes["fp32"], outcomes[path]
    assert report["evaluated"] == reference["evaluated"] == len(expected) == len(got) == 15
    for key, record in expected.items():
        scores = np.array(record["scores"])
        assert np.abs(np.array(got[key]["scores"]) - scores).max() <= COSINE_TOLERANCE, key
        if scores[0] - scores[1] > 2 * COSINE_TOLERANCE:
            assert got[key]["top5"][0] == record["top5"][0], key


def test_the_tolerance_is_not_vacuous(photo, tiny_checkpoint):
    """bf16 really changes the numbers (so the comparisons above compare something), by less than the tolerance."""
    reference = build(Segmenter, tiny_checkpoint, "fp32", threshold=None, max_num_patches=64).segment(photo, ["cat"])
    result = build(Segmenter, tiny_checkpoint, "bf16 autocast", threshold=None, max_num_patches=64).segment(photo, ["cat"])
    difference = np.abs(result.scores - reference.scores).max()
    assert 0 < difference <= COSINE_TOLERANCE


# ------------------------------------------------------------------------------- what "auto" means
def test_auto_is_bf16_autocast_on_cpus_with_bf16_matrix_units(monkeypatch):
    from fgdense import devices

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(devices.CPU_AUTO_ENV, raising=False)
    monkeypatch.setattr(devices, "cpu_has_bf16_matrix_units", lambda: True)
    assert devices.auto_precision(cpu, torch.float32) == "bf16"
    assert devices.auto_precision(cpu, torch.bfloat16) == "fp32"  # bf16 weights run as they are
    monkeypatch.setattr(devices, "cpu_has_bf16_matrix_units", lambda: False)
    assert devices.auto_precision(cpu, torch.float32) == "fp32"
    assert devices.auto_precision(cuda, torch.float32) == "bf16"
    monkeypatch.setenv(devices.CPU_AUTO_ENV, "bf16")
    assert devices.auto_precision(cpu, torch.float32) == "bf16"
    monkeypatch.setenv(devices.CPU_AUTO_ENV, "fp32")
    monkeypatch.setattr(devices, "cpu_has_bf16_matrix_units", lambda: True)
    assert devices.auto_precision(cpu, torch.float32) == "fp32"


def test_auto_runs_what_it_resolves_to(monkeypatch, tiny_checkpoint):
    """A task at ``auto`` gives exactly the numbers of the precision auto resolves to on this machine."""
    from fgdense import devices

    monkeypatch.setattr(devices, "cpu_has_bf16_matrix_units", lambda: True)
    monkeypatch.delenv(devices.CPU_AUTO_ENV, raising=False)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    scores = {}
    for precision in ("auto", "bf16", "fp32"):
        segmenter = Segmenter.from_pretrained(tiny_checkpoint, device="cpu", precision=precision, threshold=None,
                                              max_num_patches=64)
        scores[precision] = segmenter.segment(image, ["cat", "dog"]).scores
    assert np.array_equal(scores["auto"], scores["bf16"])
    assert not np.array_equal(scores["auto"], scores["fp32"])
