"""Grounding accuracy: known answers from a planted grounder, chance, what is not scored, and the tool."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fgdense.evaluation import evaluate_grounding
from fgdense.ground import Grounder
from fgdense.processing import FGCLIP2ImageProcessor

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "红色杯子"}]


def write_coco(root: Path) -> Path:
    """Four images: two with three boxes of two or three categories, one of a single category, one missing."""
    (root / "images").mkdir(parents=True)
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48} for i in range(1, 5)]
    for entry in images[:3]:
        Image.new("RGB", (64, 48), (40 * entry["id"], 90, 160)).save(root / "images" / entry["file_name"])
    boxes = [(1, 1, [2, 2, 20, 20]), (1, 2, [30, 4, 20, 30]), (1, 2, [5, 25, 10, 10]),   # cat, dog, dog
             (2, 5, [0, 0, 30, 30]), (2, 1, [32, 10, 20, 20]), (2, 2, [10, 30, 40, 12]),  # cup, cat, dog
             (3, 1, [4, 4, 20, 20]), (3, 1, [30, 4, 20, 20]),                             # cat, cat: not scored
             (4, 1, [4, 4, 20, 20]), (4, 2, [30, 4, 20, 20])]                             # no image file
    annotations = [{"id": k, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                   for k, (i, c, b) in enumerate(boxes, 1)]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


class PlantedGrounder(Grounder):
    """A test double of the model: for each image (known by its phrases) the box indices the test planted,
    through the evaluation's whole path (the bulk runner, the records, the reduction)."""

    def __init__(self, picks: dict):
        super().__init__(model=None, processor=FGCLIP2ImageProcessor(max_num_patches=64))
        self.picks = picks
        self.calls = []

    def ground_batch(self, images, phrases, boxes=None, progress=False, **overrides):
        out = []
        for image_boxes in boxes:
            self.calls.append((list(phrases), np.asarray(image_boxes)))
            out.append(SimpleNamespace(best_indices=np.array(self.picks[tuple(phrases)])))
        return out


def test_accuracy_chance_and_what_is_not_scored(tmp_path):
    ann = write_coco(tmp_path)
    # Image 1 phrases (cat, dog): pick box 0 (cat: right) and box 0 (dog: wrong).
    # Image 2 phrases (cup, cat, dog): pick 0 (right), 2 (wrong: a dog), 2 (right).
    grounder = PlantedGrounder({("cat", "dog"): [0, 0], ("红色杯子", "cat", "dog"): [0, 2, 2]})
    report = evaluate_grounding(grounder, ann, tmp_path / "images", progress=False)
    assert [c[0] for c in grounder.calls] == [["cat", "dog"], ["红色杯子", "cat", "dog"]]
    np.testing.assert_allclose(grounder.calls[0][1], [[2, 2, 22, 22], [30, 4, 50, 34], [5, 25, 15, 35]])
    assert report["phrases"] == 5 and report["right"] == 3 and report["accuracy"] == pytest.approx(3 / 5)
    # chance: image 1 cat 1/3, dog 2/3; image 2: 1/3 each
    assert report["chance"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 3 + 1 / 3 + 1 / 3) / 5)
    assert report["images_scored"] == 2
    assert report["images_not_scored"] == {"one category only": 1, "missing image": 1}
    assert report["per_category"]["2"] == {"name": "dog", "phrases": 2, "accuracy": 0.5}
    assert report["per_category"]["5"]["accuracy"] == 1.0


def test_a_category_renamed_in_place_is_grounded_again_not_resumed(tmp_path):
    ann = write_coco(tmp_path)
    picks = {("cat", "dog"): [0, 0], ("红色杯子", "cat", "dog"): [0, 2, 2]}
    first = evaluate_grounding(PlantedGrounder(picks), ann, tmp_path / "images", out=tmp_path / "out", progress=False)
    assert first["right"] == 3
    again = PlantedGrounder(picks)
    evaluate_grounding(again, ann, tmp_path / "images", out=tmp_path / "out", progress=False)
    assert again.calls == []  # unchanged: resumed from the records
    data = json.loads(ann.read_text())
    data["categories"][0]["name"] = "kitten"  # the same file, edited in place
    ann.write_text(json.dumps(data))
    renamed = PlantedGrounder({("kitten", "dog"): [1, 1], ("红色杯子", "kitten", "dog"): [0, 1, 1]})
    report = evaluate_grounding(renamed, ann, tmp_path / "images", out=tmp_path / "out", progress=False)
    assert [c[0] for c in renamed.calls] == [["kitten", "dog"], ["红色杯子", "kitten", "dog"]]
    assert report["right"] == 3 and report["per_category"]["1"] == {"name": "kitten", "phrases": 2, "accuracy": 0.5}


def test_the_tool_on_a_tiny_checkpoint(tmp_path, tiny_checkpoint):
    ann = write_coco(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_grounding.py"), "--ann", str(ann), "--images",
                           str(tmp_path / "images"), "--model", str(tiny_checkpoint), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["phrases"] == 5 and 0 <= report["right"] <= 5 and report["model"] == str(tiny_checkpoint)
    settings = report["settings"]  # what the numbers were made with, as every tool's JSON records it
    assert settings["max_patches"] == "checkpoint" and settings["precision"] == "fp32" and settings["device"] == "cpu"
    assert "grounding accuracy" in done.stdout
    # The annotation file is never an output; a missing folder is one line.
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_grounding.py"), "--ann", str(ann), "--images",
                           str(tmp_path / "nowhere"), "--model", str(tiny_checkpoint), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip() == f"error: images folder {tmp_path / 'nowhere'} does not exist"


def test_boxes_without_area_are_no_candidates_and_are_counted(tmp_path):
    """A zero-area, a `true` and an inverted box in an image: left out of its candidates, counted, said."""
    from fgdense.evaluation import format_grounding_report

    ann = write_coco(tmp_path)
    data = json.loads(ann.read_text())
    data["annotations"] += [{"id": 20, "image_id": 1, "category_id": 1, "bbox": [2, 2, 0, 20], "iscrowd": 0},
                            {"id": 21, "image_id": 1, "category_id": 2, "bbox": [True, 2, 10, 10], "iscrowd": 0},
                            {"id": 22, "image_id": 2, "category_id": 5, "bbox": [30, 2, -10, 10], "iscrowd": 0}]
    ann.write_text(json.dumps(data))
    grounder = PlantedGrounder({("cat", "dog"): [0, 1], ("红色杯子", "cat", "dog"): [0, 1, 2]})
    report = evaluate_grounding(grounder, ann, tmp_path / "images", progress=False)
    assert [len(boxes) for _, boxes in grounder.calls] == [3, 3]  # the images' own three boxes each
    assert report["boxes_not_candidates"] == {"degenerate_box": 3} and report["images_scored"] == 2
    assert "3 box(es) without area" in format_grounding_report(report)
