"""tools/segment.py: the files it writes (planted signal through the JSON), the real command, bad input."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgdense.io.outputs import write_segmentation
from test_bulk import outputs_in
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
    (tmp_path / "out").mkdir()
    result = segmenter.segment(tmp_path / "scene.png", labels)
    write_segmentation(image, result, tmp_path / "out", "scene", {"image": str(tmp_path / "scene.png")})
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
    assert outputs_in(out) == sorted("img" + s for s in OUTPUTS)
    assert "warning" not in run.stderr  # the bundled font draws 电脑: no system CJK font needed
    data = json.loads((out / "img.json").read_text(encoding="utf-8"))
    assert data["labels"] == ["电脑", "cat"] and data["image_size_hw"] == [300, 451]
    assert data["settings"]["max_patches"] == 1024 and isinstance(data["threshold"], float)
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
    assert len(outputs_in(tmp_path / "o2")) == 8
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
    "huge --max-patches": (["ok.png", "--labels", "cat", "--max-patches", "100000000"], "from 1 to 16384"),
    "bad --threshold": (["ok.png", "--labels", "cat", "--threshold", "high"], "--threshold"),
    "missing font": (["ok.png", "--labels", "cat", "--font", "nofont.ttf"], "font"),
    "not a font": (["ok.png", "--labels", "cat", "--font", "notes.txt"], "not a TrueType"),
    "control character": (["ok.png", "--labels", "ca\x1bt"], "control characters"),
    "no CUDA": (["ok.png", "--labels", "cat", "--device", "cuda:5"], "cuda:5"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, case):
    argv, message = BAD_INPUTS[case]
    planted_scene()[0].save(tmp_path / "ok.png")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = load_tool().main(argv + ["--model", "nobody/never-loaded"])  # a hub id: looked up only when it loads
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_read_only_out_folder_is_refused(tmp_path, capsys, read_only):
    image, _ = planted_scene()
    image.save(tmp_path / "ok.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    code = load_tool().main([str(tmp_path / "ok.png"), "--labels", "cat", "--out", str(locked / "out")])
    assert code != 0 and "not writable" in capsys.readouterr().err


def test_bad_input_as_a_real_process_exits_non_zero_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, str(TOOL), "missing.jpg", "--labels", "cat"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert run.stderr.strip() == "error: image missing.jpg does not exist"
    assert list(tmp_path.iterdir()) == []


def test_no_png_writes_the_data_outputs_only(tmp_path, monkeypatch, tiny_checkpoint):
    planted_scene()[0].save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    code = load_tool().main(["a.png", "--labels", "red", "--model", str(tiny_checkpoint), "--no-png", "--quiet",
                             "--font", "no-such-font.ttf"])  # no pictures: the font is never needed
    assert code == 0
    assert outputs_in(tmp_path / "segment_out") == ["a.json", "a_labels.png"]


def test_a_label_no_font_can_draw_warns_once_and_still_writes_everything(tmp_path, capsys, monkeypatch, recwarn,
                                                                           tiny_checkpoint):
    from fgdense.io import fonts

    monkeypatch.setattr(fonts, "_system_fonts", lambda: [])  # a bare machine: the bundled font only
    planted_scene()[0].save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    code = load_tool().main(["a.png", "--labels", "齉龘", "cat", "--model", str(tiny_checkpoint), "--quiet"])
    assert code == 0, capsys.readouterr().err
    about_fonts = [str(w.message) for w in recwarn if "font" in str(w.message)]
    assert len(about_fonts) == 1 and "齉龘" in about_fonts[0] and "--font" in about_fonts[0], about_fonts
    assert len(outputs_in(tmp_path / "segment_out")) == 4
    data = json.loads((tmp_path / "segment_out" / "a.json").read_text(encoding="utf-8"))
    assert data["labels"] == ["齉龘", "cat"]  # the data keeps the label whole


def test_an_input_image_named_like_an_output_is_never_overwritten(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    planted_scene()[0].save(out / "x_overlay.png")
    planted_scene()[0].save(tmp_path / "x.png")
    before = (out / "x_overlay.png").read_bytes()
    monkeypatch.chdir(tmp_path)
    code = load_tool().main(["x.png", "out/x_overlay.png", "--labels", "red", "--model", str(tiny_checkpoint),
                             "--out", "out", "--quiet"])
    # x_overlay.png's own outputs are x_overlay_overlay.png etc.; x.png's overlay would be the input itself.
    assert code != 0 and "never writes over its inputs" in capsys.readouterr().err
    assert (out / "x_overlay.png").read_bytes() == before


def test_ctrl_c_ends_with_one_line_exit_130_and_no_partial_file(tmp_path, tiny_checkpoint):
    import signal
    import time

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(40):
        planted_scene()[0].save(folder / f"img{index:02d}.png")
    process = subprocess.Popen([sys.executable, str(TOOL), str(folder), "--labels", "red", "--model",
                                str(tiny_checkpoint), "--out", str(tmp_path / "out"), "--quiet", "--max-patches", "64"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "out").glob("*.json"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and "of 40 image(s) finished" in lines[0], err
    assert "Traceback" not in err
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written if p.name.startswith(".")] == [".fgdense-job.txt"]  # no temporary file left
    written = [p for p in written if not p.name.startswith(".")]
    stems = {p.name.split("_")[0].split(".")[0] for p in written}
    for stem in stems:  # every image started is either complete or absent
        assert len([p for p in written if p.name.split("_")[0].split(".")[0] == stem]) == 4, stem


def test_superpixels_without_scikit_image_is_one_line_before_the_model_loads(tmp_path, monkeypatch, capsys):
    """scikit-image is optional: asking for superpixel regions without it is refused at once (the tool's
    checks, and the segmenter's settings), not once per image after the model has loaded."""
    import importlib.util

    from fgdense.errors import FGDenseError
    from fgdense.segment import Segmenter

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    planted_scene()[0].save(tmp_path / "ok.png")
    monkeypatch.chdir(tmp_path)
    code = load_tool().main(["ok.png", "--labels", "cat", "--regions", "superpixels", "--model", "nobody/never-loaded"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "needs scikit-image" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]
    with pytest.raises(FGDenseError, match="needs scikit-image"):
        Segmenter.Settings(regions="superpixels")
