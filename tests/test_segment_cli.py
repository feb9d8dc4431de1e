"""tools/segment.py: the files it writes (planted signal through the JSON), the real command, bad input."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgdense.segment import expand_inputs, segment_files
from test_segment import BLUE, GREEN, RED, PlantedSegmenter, iou, planted_scene

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "segment.py"
OUTPUTS = ("_overlay.png", "_heatmaps.png", "_labels.png", ".json")


def load_tool():
    spec = importlib.util.spec_from_file_location("segment_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decode(rle):
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_planted_signal_through_the_written_files(tmp_path):
    image, truth = planted_scene()
    image.save(tmp_path / "scene.png")
    segmenter = PlantedSegmenter({"红色方块": RED, "blue disc": BLUE, "green": GREEN}, threshold=0.5)
    labels = ["红色方块", "blue disc"]
    report = segment_files(segmenter, expand_inputs([tmp_path / "scene.png"]), labels, tmp_path / "out", progress=False)
    assert not report.failed
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted("scene" + suffix for suffix in OUTPUTS)  # and no temporary files left
    data = json.loads((tmp_path / "out" / "scene.json").read_text(encoding="utf-8"))
    assert data["labels"] == labels and data["image"].endswith("scene.png")
    for seg, name in zip(data["segments"], ["red", "blue"]):
        mask = decode(seg["rle"])
        assert iou(mask, truth[name]) > 0.9, name
        assert seg["area"] == int(mask.sum()) and seg["mean_score"] > 0.9
    rest = ~(truth["red"] | truth["blue"])
    assert data["background_area"] >= 0.95 * rest.sum()
    # The palette label map holds the same segmentation: 0 background, k + 1 for label k.
    label_png = Image.open(tmp_path / "out" / "scene_labels.png")
    assert label_png.mode == "P"
    values = np.asarray(label_png)
    for k, seg in enumerate(data["segments"]):
        assert ((values == k + 1) == decode(seg["rle"])).all()
    assert Image.open(tmp_path / "out" / "scene_overlay.png").width > image.width  # image + legend strip
    assert Image.open(tmp_path / "out" / "scene_heatmaps.png").size[0] >= 2 * image.width  # two panels


def test_a_broken_file_is_reported_and_the_others_are_written(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    image, _ = planted_scene()
    image.save(folder / "a.png")
    image.save(folder / "c.png")
    data = (folder / "a.png").read_bytes()
    (folder / "b.png").write_bytes(data[: len(data) // 3])  # a valid header, truncated pixel data
    (folder / "notes.txt").write_text("not an image")  # not an image suffix: not picked up
    paths = expand_inputs([folder])
    assert [p.name for p in paths] == ["a.png", "b.png", "c.png"]
    segmenter = PlantedSegmenter({"red": RED}, threshold=0.5)
    report = segment_files(segmenter, paths, ["red"], tmp_path / "out", progress=False)
    assert list(report.failed) == [str(folder / "b.png")]
    assert sorted(Path(p).name for p in report.written) == ["a.png", "c.png"]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(s + x for s in ("a", "c") for x in OUTPUTS)


def test_the_title_command_runs_on_a_real_photograph(tmp_path, tiny_checkpoint):
    """`python tools/segment.py img.jpg --labels 电脑 cat` with --model: all four outputs, as a subprocess."""
    from skimage import data as skdata

    Image.fromarray(skdata.chelsea()).save(tmp_path / "img.jpg")
    # The default --out is ./segment_out.
    run = subprocess.run(
        [sys.executable, str(TOOL), "img.jpg", "--labels", "电脑", "cat", "--model", str(tiny_checkpoint)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / "segment_out"
    assert sorted(p.name for p in out.iterdir()) == sorted("img" + s for s in OUTPUTS)
    data = json.loads((out / "img.json").read_text(encoding="utf-8"))
    assert data["labels"] == ["电脑", "cat"] and data["image_size"] == [300, 451]
    assert data["max_patches"] == 1024 and isinstance(data["threshold"], float)
    total = data["background_area"] + sum(s["area"] for s in data["segments"])
    assert total == 300 * 451
    for suffix in OUTPUTS[:3]:
        with Image.open(out / ("img" + suffix)) as picture:
            picture.load()


def test_folders_and_options_in_one_call(tmp_path, monkeypatch, tiny_checkpoint):
    """A folder plus a file, one model load (in-process, to keep the suite fast), every option on."""
    from skimage import data as skdata

    Image.fromarray(skdata.chelsea()).resize((150, 100)).save(tmp_path / "img.jpg")
    (tmp_path / "more").mkdir()
    Image.fromarray(skdata.astronaut()).resize((128, 128)).save(tmp_path / "more" / "astronaut.png")
    monkeypatch.chdir(tmp_path)
    code = load_tool().main(["more", "img.jpg", "--labels", "电脑", "cat|猫", "--model", str(tiny_checkpoint),
                             "--threshold", "none", "--max-patches", "64", "--out", "o2", "--refine", "--templates",
                             "--quiet"])
    assert code == 0
    assert len(list((tmp_path / "o2").iterdir())) == 8
    data = json.loads((tmp_path / "o2" / "astronaut.json").read_text(encoding="utf-8"))
    assert data["threshold"] is None and data["background_area"] == 0  # no threshold: every pixel labelled


BAD_INPUTS = {
    "missing image": (["nope.png", "--labels", "cat"], "does not exist"),
    "non-image file": (["notes.txt", "--labels", "cat"], "not an image"),
    "empty --labels": (["ok.png", "--labels"], "at least one label"),
    "no --labels": (["ok.png"], "at least one label"),
    "duplicate labels": (["ok.png", "--labels", "cat", "dog", "Cat"], "duplicate"),
    "label also background": (["ok.png", "--labels", "cat", "--background", "cat"], "duplicate"),
    "unwritable --out": (["ok.png", "--labels", "cat", "--out", "afile/sub"], "output folder"),
    "--out is a file": (["ok.png", "--labels", "cat", "--out", "afile"], "is a file"),
    "bad --max-patches": (["ok.png", "--labels", "cat", "--max-patches", "lots"], "--max-patches"),
    "bad --threshold": (["ok.png", "--labels", "cat", "--threshold", "high"], "--threshold"),
    "missing font": (["ok.png", "--labels", "cat", "--font", "nofont.ttf"], "font"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, case):
    argv, message = BAD_INPUTS[case]
    planted_scene()[0].save(tmp_path / "ok.png")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = load_tool().main(argv + ["--model", "never-loaded"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_out_folder_is_refused(tmp_path, capsys):
    image, _ = planted_scene()
    image.save(tmp_path / "ok.png")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code = load_tool().main([str(tmp_path / "ok.png"), "--labels", "cat", "--out", str(locked / "out")])
    assert code != 0 and "not writable" in capsys.readouterr().err


def test_bad_input_as_a_real_process_exits_non_zero_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, str(TOOL), "missing.jpg", "--labels", "cat"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert run.stderr.strip() == "error: image missing.jpg does not exist"
    assert list(tmp_path.iterdir()) == []
