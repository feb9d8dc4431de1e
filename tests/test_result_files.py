"""One writer per result kind: the tools and the demo write the same files with the same JSON keys, record
the settings a result was made with, share their default patch budgets, and write floats as people do."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "docs" / "images" / "cat.jpg"
BOXES = [[40, 30, 260, 290], [0, 0, 451, 120]]
LABELS = ["电脑", "cat", "dog", "cup", "road", "tree"]  # more than top-k's 5: both sides list the same five


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def engine(tiny_checkpoint, tmp_path_factory):
    from fgdense.demo.engine import DemoEngine

    engine = DemoEngine.from_pretrained(tiny_checkpoint, device="cpu", work_dir=tmp_path_factory.mktemp("demo"))
    yield engine
    engine.close()


@pytest.fixture
def photo(tmp_path):
    shutil.copy(CAT, tmp_path / "cat.jpg")
    return tmp_path / "cat.jpg"


def _read(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _same_result(tool_json: dict, demo_json: dict) -> None:
    """Equal but for where the image was read from (the demo names the upload by its file name)."""
    assert Path(tool_json.pop("image")).name == demo_json.pop("image")
    tool_json.pop("run")  # the bulk tools' resume hash
    assert tool_json == demo_json


def test_a_box_gets_the_same_numbers_and_settings_from_the_tool_and_the_demo(engine, photo, tiny_checkpoint):
    """The demo's Label boxes tab runs at the budget tools/classify_boxes.py runs at by default: the same
    JSON, settings included (before, the demo ran every tab at ``auto``: other numbers for the same box)."""
    boxes = photo.parent / "boxes.json"
    boxes.write_text(json.dumps(BOXES))
    out = photo.parent / "out"
    code = _tool("classify_boxes").main([str(photo), "--boxes", str(boxes), "--labels", *LABELS, "--model",
                                         str(tiny_checkpoint), "--out", str(out), "--quiet"])
    assert code == 0
    answer = engine.classify(photo, json.dumps(BOXES), ", ".join(LABELS), top_k=5)
    tool_json, demo_json = _read(out / "cat.json"), _read(answer.json)
    assert tool_json["settings"]["max_patches"] == "checkpoint"
    _same_result(tool_json, demo_json)


def test_grounding_gets_the_same_answer_from_the_tool_and_the_demo(engine, photo, tiny_checkpoint):
    boxes = photo.parent / "boxes.json"
    boxes.write_text(json.dumps(BOXES))
    out = photo.parent / "out"
    code = _tool("ground").main([str(photo), "--boxes", str(boxes), "--phrases", "a cat", "电脑", "--model",
                                 str(tiny_checkpoint), "--out", str(out), "--quiet"])
    assert code == 0
    answer = engine.ground(photo, "a cat\n电脑", json.dumps(BOXES))
    _same_result(_read(out / "cat.json"), _read(answer.json))


def test_segmentation_gets_the_same_answer_from_the_tool_and_the_demo(engine, photo, tiny_checkpoint):
    out = photo.parent / "out"
    code = _tool("segment").main([str(photo), "--labels", "电脑", "cat", "--model", str(tiny_checkpoint),
                                  "--out", str(out), "--quiet"])
    assert code == 0
    answer = engine.segment(photo, "电脑 cat")
    tool_json, demo_json = _read(out / "cat.json"), _read(answer.json)
    assert tool_json["settings"]["max_patches"] == 1024  # "auto" on a CPU
    _same_result(tool_json, demo_json)


def test_every_tool_and_the_demo_tab_default_to_their_task_s_budget(engine):
    """One default per job, defined once (fgdense.defaults): tool flag, task class and demo tab agree."""
    from fgdense import cli
    from fgdense.classify import BoxClassifier
    from fgdense.classify_masks import MaskClassifier
    from fgdense.ground import Grounder
    from fgdense.segment import Segmenter

    argv = {"segment": ["x.jpg", "--labels", "cat"], "classify_boxes": ["x.jpg", "--labels", "cat"],
            "ground": ["x.jpg", "--phrases", "cat"], "classify_masks": ["x.jpg", "--masks", "m.png"]}
    tasks = {"segment": Segmenter, "classify_boxes": BoxClassifier, "ground": Grounder,
             "classify_masks": MaskClassifier}
    for name, args in argv.items():
        flag = _tool(name).parse_args(args).max_patches
        assert cli.max_patches_setting(flag) == tasks[name].Settings().max_num_patches, name
    assert engine.segmenter.settings.max_num_patches == Segmenter.Settings().max_num_patches
    assert engine.classifier.settings.max_num_patches == BoxClassifier.Settings().max_num_patches
    assert engine.grounder.settings.max_num_patches == Grounder.Settings().max_num_patches
    assert _tool("demo").parse_args([]).max_patches is None  # no flag: each tab its task's default


@pytest.mark.parametrize("kind", ["segmentation", "boxes", "grounding", "masks"])
def test_every_result_file_starts_with_the_image_its_size_and_the_settings(kind, tiny_checkpoint, tmp_path):
    from fgdense.classify import BoxClassifier
    from fgdense.classify_masks import MaskClassifier
    from fgdense.ground import Grounder
    from fgdense.io import outputs
    from fgdense.segment import Segmenter

    image = Image.open(CAT).convert("RGB")
    masks = np.zeros((2, image.height, image.width), bool)
    masks[0, 30:290, 40:260] = masks[1, :120, :] = True
    jobs = {
        "segmentation": (Segmenter, lambda t: t.segment(image, ["cat", "dog"]), outputs.write_segmentation),
        "boxes": (BoxClassifier, lambda t: t.classify(image, np.array(BOXES), ["cat", "dog"]),
                  outputs.write_box_classification),
        "grounding": (Grounder, lambda t: t.ground(image, ["a cat"]), outputs.write_grounding),
        "masks": (MaskClassifier, lambda t: t.classify(image, masks, ["cat", "dog"]),
                  outputs.write_mask_classification),
    }
    task_class, run, write = jobs[kind]
    task = task_class.from_pretrained(tiny_checkpoint, device="cpu", max_num_patches=64, precision="fp32")
    paths = write(image, run(task), tmp_path, "cat", outputs.header("cat.jpg", image, task, "fg-tiny"))
    data = _read(paths["json"])
    assert list(data)[:3] == ["image", "image_size_hw", "settings"]
    assert data["image"] == "cat.jpg" and data["image_size_hw"] == [300, 451]
    settings = data["settings"]
    assert {k: settings[k] for k in ("model", "device", "precision", "max_patches", "text_mask")} == {
        "model": "fg-tiny", "device": "cpu", "precision": "fp32", "max_patches": 64, "text_mask": "tokenizer"}
    assert "batch_size" not in settings and settings["walk"]
    assert all(Image.open(p).width >= image.width for key, p in paths.items() if key != "json")


def test_settings_record_the_overrides_a_result_was_made_with(tiny_checkpoint):
    from fgdense.io.outputs import header
    from fgdense.segment import Segmenter

    segmenter = Segmenter.from_pretrained(tiny_checkpoint, device="cpu", max_num_patches="auto", precision="auto")
    image = Image.new("RGB", (40, 30))
    settings = header("a.png", image, segmenter, "m", threshold=0.25, refine=True)["settings"]
    assert settings["threshold"] == 0.25 and settings["refine"] is True and settings["regions"] == "objects"
    assert settings["max_patches"] == 1024 and settings["precision"] in ("fp32", "bf16")  # as resolved on a CPU
    assert header("a.png", image, segmenter, "m", run="abc")["run"] == "abc"


def test_float32_values_are_written_as_people_write_them(tmp_path):
    """A threshold computed in float32 (0.1 -> 0.10000000149011612 as a Python float) is written 0.1;
    read back and cast to float32 it is the same number. Floats that are not float32 values are kept."""
    from fgdense.io.files import json_text
    from fgdense.io.outputs import write_segmentation
    from fgdense.segment import SegmentationResult

    threshold = float(np.float32(0.1))
    assert threshold != 0.1
    scores = np.full((1, 4, 5), 0.3, np.float32)
    result = SegmentationResult(["cat"], scores, np.zeros((4, 5), np.int32), threshold)
    paths = write_segmentation(Image.new("RGB", (5, 4)), result, tmp_path, "x", pictures=False)
    text = paths["json"].read_text(encoding="utf-8")
    assert '"threshold": 0.1,' in text and "0.10000000149011612" not in text
    assert '"max_score": 0.3,' in text
    data = json.loads(text)
    assert np.float32(data["threshold"]) == np.float32(threshold)
    assert json.loads(json_text({"a": 1 / 3, "b": np.float32(2.5), "c": 7, "d": [np.float32(1e-5)]})) == {
        "a": 1 / 3, "b": 2.5, "c": 7, "d": [1e-5]}
