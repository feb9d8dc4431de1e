"""JSON a user gives, as a hostile user would write it: nested 100k deep, numbers no float holds, ``true`` for a
coordinate, a million boxes in one line, an image id twice; and images that decode huge. Each reader says so
in one error naming the file (or counts the line as bad), never a RecursionError or OverflowError."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fgdense.config import FGCLIP2Config
from fgdense.errors import BoxError, CheckpointError, DatasetError, ImageLoadError
from fgdense.evaluation.boxclass_data import load_boxclass_dataset
from fgdense.evaluation.segmentation_data import CocoDataset
from fgdense.io.coco import read_coco
from fgdense.io.inputs import MAX_BOXES_PER_IMAGE, parse_boxes, read_boxes_file
from fgdense.io.sources import Sources
from fgdense.jsontext import finite_number
from fgdense.processing import FGCLIP2ImageProcessor

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECTS = '{"a": ' * 100_000 + "1" + "}" * 100_000  # as deep, with no bracket a box count would see
HUGE = int("9" * 400)


def _image(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 60)).save(path)
    return path


def _coco(path, images=None, annotations=None):
    images = images if images is not None else [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}]
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "cat"}]}))
    return path


# ------------------------------------------------------------------------------- nested too deeply
def test_deep_nesting_is_one_error_naming_the_file_in_every_reader(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    objects = tmp_path / "objects.json"
    objects.write_text(DEEP_OBJECTS)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(DEEP)
    (tmp_path / "ckpt" / "preprocessor_config.json").write_text(DEEP)
    with pytest.raises(BoxError, match=f"boxes file {objects} is nested too deeply"):
        read_boxes_file(objects)
    with pytest.raises(BoxError, match=f"boxes file {deep} holds more than"):  # 100k brackets: refused unparsed
        read_boxes_file(deep)
    for read in (read_coco, load_boxclass_dataset, lambda p: CocoDataset(p, tmp_path)):
        with pytest.raises(DatasetError, match=f"annotation file {deep} is nested too deeply"):
            read(deep)
    with pytest.raises(CheckpointError, match="config.json is nested too deeply"):
        FGCLIP2Config.from_json_file(tmp_path / "ckpt" / "config.json")
    with pytest.raises(CheckpointError, match="preprocessor_config.json is nested too deeply"):
        FGCLIP2ImageProcessor.from_pretrained(tmp_path / "ckpt")


def test_a_deep_jsonl_line_is_refused_first_and_a_bad_line_later(tmp_path):
    _image(tmp_path / "a.png")
    first = tmp_path / "first.jsonl"
    first.write_text(DEEP_OBJECTS + "\n")
    with pytest.raises(ImageLoadError, match="nested too deeply"):
        Sources([first])
    later = tmp_path / "later.jsonl"
    later.write_text(json.dumps({"path": "a.png"}) + "\n" + DEEP_OBJECTS + "\n")
    items = list(Sources([later]).items())
    assert items[0].problem is None
    assert items[1].problem[0] == "bad_manifest_line" and "nested too deeply" in items[1].problem[1]


# ------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value, number", [(3, 3.0), (2.5, 2.5), (True, None), (False, None), (HUGE, None),
                                           (float("inf"), None), ("3", None), (None, None)])
def test_finite_number(value, number):
    assert finite_number(value) == number
    assert finite_number(float("nan")) is None


@pytest.mark.parametrize("box", [[True, 0, 10, 10], [0, 0, HUGE, 10], [0, 0, "10", 10]])
def test_a_box_that_is_not_four_numbers_is_refused(tmp_path, box):
    with pytest.raises(BoxError, match="box 1 is not"):
        parse_boxes(json.dumps([[0, 0, 5, 5], box]), "boxes")
    _image(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "a.png"}) + "\n" + json.dumps({"path": "a.png", "boxes": [box]}) + "\n")
    bad = list(Sources([manifest]).items())[1]
    assert bad.problem[0] == "bad_boxes" and bad.boxes is None


@pytest.mark.parametrize("bbox", [[True, 1, 10, 10], [1, 1, HUGE, 10], [1, 1, 10, False]])
def test_a_coco_bbox_of_bools_or_huge_integers_is_a_degenerate_box(tmp_path, bbox):
    path = _coco(tmp_path / "ann.json", annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox, "area": 1, "iscrowd": 0}])
    box = load_boxclass_dataset(path).images[0].annotations[0].bbox
    assert all(np.isnan(box))  # box validation counts it as degenerate_box, never scored as [1, 1, 11, 11]


# ------------------------------------------------------------------------------- how much
def test_more_boxes_than_one_image_takes_are_refused_before_parsing(tmp_path):
    many = json.dumps([[0, 0, 1, 1]] * (MAX_BOXES_PER_IMAGE + 1))
    with pytest.raises(BoxError, match=f"more than {MAX_BOXES_PER_IMAGE} boxes"):
        parse_boxes(many, "boxes")
    assert parse_boxes(json.dumps([[0, 0, 1, 1]] * MAX_BOXES_PER_IMAGE), "boxes").shape == (MAX_BOXES_PER_IMAGE, 4)
    _image(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "a.png"}) + "\n" + '{"path": "a.png", "boxes": ' + many + "}\n")
    bad = list(Sources([manifest]).items())[1]
    assert bad.problem[0] == "too_many_boxes"


def test_a_decompression_bomb_named_as_an_argument_is_one_error(tmp_path, monkeypatch):
    bomb = _image(tmp_path / "bomb.png", (200, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 20000 pixels: over twice the limit, PIL refuses
    with pytest.raises(ImageLoadError, match="bomb.png is too large to decode safely"):
        Sources([bomb])


# ------------------------------------------------------------------------------- repeated images
def test_an_image_id_given_twice_is_refused_and_a_file_named_twice_is_counted(tmp_path):
    from fgdense.evaluation.boxclass_report import Tally, build_report, format_report

    first = {"id": 1, "file_name": "a.png", "width": 40, "height": 30}
    path = _coco(tmp_path / "ids.json", images=[first, dict(first, file_name="b.png")])
    for read in (read_coco, load_boxclass_dataset, lambda p: CocoDataset(p, tmp_path)):
        with pytest.raises(DatasetError, match="image id 1 appears twice"):
            read(path)
    # Two entries of one file are two images (the official evaluations score both): legal, counted, said.
    path = _coco(tmp_path / "names.json", images=[first, dict(first, id=2), dict(first, id=3, file_name="b.png")])
    dataset = load_boxclass_dataset(path)
    assert dataset.shared_files == 1 and CocoDataset(path, tmp_path).shared_files == 1
    report = build_report(dataset, Tally(dataset.categories), {})
    assert report["image_entries_sharing_a_file"] == 1
    assert "1 image entries name a file an earlier entry names" in format_report(report)


# ------------------------------------------------------------------------------- the COCO results file
def test_a_box_past_the_image_is_clipped_in_a_strict_json_coco_file(tmp_path, tiny_checkpoint):
    from test_bulk import tool

    image = _image(tmp_path / "imgs" / "a.png", (64, 48))
    manifest = tmp_path / "boxes.jsonl"
    manifest.write_text(json.dumps({"path": str(image), "boxes": [[0, 0, 1e6, 1e6], [8, 8, 30, 20]]}) + "\n")
    out = tmp_path / "out"
    code = tool("classify_boxes")([str(manifest), "--labels", "cat", "dog", "--model", str(tiny_checkpoint),
                                   "--out", str(out), "--coco", str(tmp_path / "c.json"), "--quiet", "--workers", "0",
                                   "--no-png"])
    assert code == 0

    def refuse(constant):
        raise AssertionError(f"{constant} in the COCO file")

    coco = json.loads((tmp_path / "c.json").read_text(), parse_constant=refuse)
    first, second = coco["annotations"]
    assert first["bbox"] == [0.0, 0.0, 64.0, 48.0] and first["area"] == 64 * 48
    assert second["bbox"] == [8.0, 8.0, 22.0, 12.0] and second["area"] == 22 * 12
    shutil.rmtree(out)


def test_a_masks_file_and_a_finehard_file_nested_too_deeply_are_one_error(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    from fgdense.errors import FGDenseError, FineHARDError
    from fgdense.train.data import read_annotations

    spec = importlib.util.spec_from_file_location(
        "classify_masks_tool", Path(__file__).resolve().parents[1] / "tools" / "classify_masks.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    deep = tmp_path / "masks.json"
    deep.write_text(DEEP)
    with pytest.raises(FGDenseError, match="masks file .*masks.json cannot be read"):
        tool.read_masks(deep)
    bomb = _image(tmp_path / "masks.png", (200, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(FGDenseError, match="masks file .*masks.png cannot be read"):
        tool.read_masks(bomb)
    for name in ("finehard.json", "finehard.jsonl"):
        (tmp_path / name).write_text(DEEP + "\n")
        with pytest.raises(FineHARDError, match=f"cannot read annotation file .*{name}"):
            read_annotations(tmp_path / name)


@pytest.mark.parametrize("bbox, reason", [([True, 10, 30, 20], "malformed"), ([10, 10, HUGE, 20], "degenerate")])
def test_training_reads_no_bool_or_huge_integer_as_a_coordinate(tmp_path, bbox, reason):
    from fgdense.train.coco import CocoRegionDataset

    _image(tmp_path / "a.png", (100, 80))
    good = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "iscrowd": 0}
    path = _coco(tmp_path / "ann.json", images=[{"id": 1, "file_name": "a.png", "width": 100, "height": 80}],
                 annotations=[good, dict(good, id=2, bbox=bbox)])
    ds = CocoRegionDataset(path, tmp_path, num_negatives=0, progress=False)
    assert ds.report["skipped"][reason] == 1 and ds.report["annotations_used"] == 1


def test_the_new_evaluations_read_deep_nesting_as_one_error(tmp_path):
    from fgdense.evaluation.fgovd import load_fgovd
    from fgdense.evaluation.retrieval_data import load_retrieval_set, protocol_named

    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    with pytest.raises(DatasetError, match="line 1 is nested too deeply"):
        load_fgovd(deep)
    with pytest.raises(DatasetError, match="is nested too deeply"):
        load_retrieval_set(deep, protocol_named("coco"))


def test_input_files_that_are_pipes_are_refused_not_waited_on(tmp_path):
    import os

    from fgdense.errors import LabelError
    from fgdense.io.inputs import read_lines_file

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)  # nobody writes to it: opening it to read would wait forever
    with pytest.raises(BoxError, match="is not a regular file"):
        read_boxes_file(fifo)
    with pytest.raises(DatasetError, match="is not a regular file"):
        read_coco(fifo)
    with pytest.raises(LabelError, match="is not a regular file"):
        read_lines_file(fifo)
