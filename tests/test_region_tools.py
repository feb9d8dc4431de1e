"""tools/classify_boxes.py and tools/ground.py: outputs written whole, user mistakes in one line."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import CHECKPOINT, FIXTURE
from test_bulk import outputs_in

ROOT = Path(__file__).resolve().parents[1]
IMAGE = FIXTURE / "images" / "img1_200x120.png"  # 200 wide, 120 high


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


classify_main = _tool("classify_boxes")
ground_main = _tool("ground")


def _write(path, value):
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return str(path)


def test_classify_boxes_writes_json_and_png(tmp_path, capsys):
    boxes = _write(tmp_path / "boxes.json", [[0, 0, 100, 60], {"xyxy": [-10, 50, 210, 130]}, [150, 10, 151, 11]])
    code = classify_main([str(IMAGE), "--boxes", boxes, "--labels", "cat|猫", "杯子", "road",
                          "--model", str(CHECKPOINT), "--out", str(tmp_path / "cls"), "--top-k", "2"])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "cls" / f"{IMAGE.stem}.json"
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["labels"] == ["cat|猫", "杯子", "road"] and result["image_size_hw"] == [120, 200]
    assert [b["xyxy"] for b in result["boxes"]] == [[0, 0, 100, 60], [-10, 50, 210, 130], [150, 10, 151, 11]]
    for box in result["boxes"]:
        assert len(box["top_k"]) == 2 and box["label"] == box["top_k"][0]["label"]
        assert box["top_k"][0]["probability"] >= box["top_k"][1]["probability"]
    with Image.open(tmp_path / "cls" / f"{IMAGE.stem}.png") as picture:
        assert picture.size == (200, 120)
    # The result file is itself a valid boxes file.
    code = ground_main([str(IMAGE), "--phrases", "a red mug", "--boxes", str(out), "--model", str(CHECKPOINT),
                        "--out", str(tmp_path / "g"), "--no-png"])
    assert code == 0 and outputs_in(tmp_path / "g") == [f"{IMAGE.stem}.json"]
    grounding = json.loads((tmp_path / "g" / f"{IMAGE.stem}.json").read_text())
    assert grounding["mode"] == "candidate boxes" and len(grounding["phrases"][0]["scores"]) == 3


def test_ground_proposes_boxes_without_candidates(tmp_path, capsys):
    code = ground_main([str(IMAGE), "--phrases", "一只猫", "the red mug on the left", "--model", str(CHECKPOINT),
                        "--out", str(tmp_path), "--max-proposals", "2"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / f"{IMAGE.stem}.json").read_text(encoding="utf-8"))
    assert result["mode"] == "proposals"
    for entry in result["phrases"]:
        assert entry["walk_type"] == "box" and 1 <= len(entry["proposals"]) <= 2
        assert entry["box"] == entry["proposals"][0]["xyxy"]
        x1, y1, x2, y2 = entry["box"]
        assert 0 <= x1 < x2 <= 200 and 0 <= y1 < y2 <= 120
    assert (tmp_path / f"{IMAGE.stem}.png").is_file()


@pytest.mark.parametrize("tool, extra, message", [
    ("classify", ["--boxes", "BAD_NAN", "--labels", "cat"], "box 1 has a non-finite coordinate"),
    ("classify", ["--boxes", "BAD_INVERTED", "--labels", "cat"], "box 0 is inverted"),
    ("classify", ["--boxes", "BAD_SHAPE", "--labels", "cat"], "box 0 is not [x1, y1, x2, y2]"),
    ("classify", ["--boxes", "missing.json", "--labels", "cat"], "does not exist"),
    ("classify", ["--boxes", "GOOD"], "at least one label"),
    ("classify", ["--boxes", "GOOD", "--labels", "cat", "Cat"], "duplicate label"),
    ("classify", ["--boxes", "GOOD", "--labels", "cat", "--max-patches", "100000000"], "from 1 to 16384"),
    ("classify", ["--boxes", "GOOD", "--labels", "c\x07at"], "control characters"),
    ("ground", ["--phrases", "cat", "--boxes", "BAD_INVERTED"], "box 0 is inverted"),
    ("ground", ["--phrases", "cat", "  "], "is blank"),
    ("ground", ["--phrases", "cat", "--proposal-threshold", "2"], "proposal_threshold"),
    ("ground", ["--phrases", "cat", "--device", "cuda:3"], "cuda:3"),
])
def test_tool_mistakes_give_one_line_and_write_nothing(tmp_path, capsys, tool, extra, message):
    files = {"BAD_NAN": "[[0, 0, 10, 10], [1, 2, NaN, 4]]", "BAD_INVERTED": "[[50, 5, 10, 10]]",
             "BAD_SHAPE": "[[1, 2, 3]]", "GOOD": "[[0, 0, 10, 10]]"}
    extra = [_write(tmp_path / f"{a}.json", files[a]) if a in files else a for a in extra]
    main = classify_main if tool == "classify" else ground_main
    code = main([str(IMAGE), *extra, "--model", str(CHECKPOINT), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0
    assert message in err and err.count("\n") == 1 and err.startswith("error: "), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tool", ["classify", "ground"])
def test_an_output_that_would_replace_the_input_image_is_refused(tmp_path, capsys, tool):
    image = tmp_path / "gi.png"
    image.write_bytes(IMAGE.read_bytes())
    boxes = _write(tmp_path / "boxes.json", [[0, 0, 100, 60]])
    main = classify_main if tool == "classify" else ground_main
    extra = ["--labels", "cat"] if tool == "classify" else ["--phrases", "cat"]
    code = main([str(image), "--boxes", boxes, *extra, "--model", str(CHECKPOINT), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "never writes over its inputs" in err and err.count("\n") == 1, err
    assert image.read_bytes() == IMAGE.read_bytes()


def test_chinese_labels_draw_with_the_bundled_font_whatever_wins(tmp_path, capsys):
    """On a machine with no CJK font the pictures still come out, Chinese labels drawn, not refused."""
    boxes = _write(tmp_path / "boxes.json", [[0, 0, 100, 60], [100, 60, 200, 120]])
    code = classify_main([str(IMAGE), "--boxes", boxes, "--labels", "电脑", "猫", "--model", str(CHECKPOINT),
                          "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    assert "warning" not in capsys.readouterr().err  # the bundled font has these glyphs
    assert (tmp_path / "o" / f"{IMAGE.stem}.png").is_file()


def test_tool_runs_from_the_repo_root_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, "tools/classify_boxes.py", str(tmp_path / "nope.png"), "--boxes", "x.json",
                          "--labels", "cat", "--model", str(CHECKPOINT), "--out", str(tmp_path / "o")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [f"error: image {tmp_path / 'nope.png'} does not exist"]


def test_benchmark_runs_end_to_end_on_a_tiny_arch(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("benchmark_regions", ROOT / "benchmarks" / "benchmark_regions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main = module.main
    out = tmp_path / "bench.md"
    code = main(["--arch", "tiny", "--boxes", "1", "4", "--size", "64x48", "--per-box-max", "2", "--repeats", "1",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "4"]
    for row in rows:
        one_pass, per_box = (float(cell) for cell in row.split("|")[2:4])
        assert one_pass > 0 and per_box > 0
