"""Small shared pieces of the command-line tools: devices, output names and paths."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fgdense.cli import output_paths, pick_device
from fgdense.dense import pick_patch_budget
from fgdense.segment import output_stems


@pytest.mark.parametrize("name, message", [("gpu", "unknown device 'gpu'"), ("cuda:7", "CUDA")])
def test_device_mistakes_are_value_errors(name, message):
    with pytest.raises(ValueError, match=message):
        pick_device(name)


def test_output_stems_never_collide():
    assert output_stems([Path("a/x.jpg"), Path("b/x.jpg"), Path("c/x-2.jpg")]) == ["x", "x-2", "x-2-2"]


def test_json_and_picture_on_the_same_path_is_refused(tmp_path):
    _, _, problem = output_paths(str(tmp_path / "r.png"))
    assert problem and "same file" in problem
    assert output_paths(str(tmp_path / "r.json")) == (str(tmp_path / "r.json"), str(tmp_path / "r.png"), None)


def test_budgets_above_16384_are_honoured():
    assert pick_patch_budget(1000, 1000, 40000) == 40000
    assert pick_patch_budget(10, 3000, 20000) == 20000


def test_box_tool_outputs_are_ordinary_files(tmp_path):
    from PIL import Image

    from fgdense.viz_boxes import write_outputs

    picture = Image.new("RGB", (4, 4))
    write_outputs(tmp_path / "g.json", {"a": 1}, tmp_path / "g.png", picture)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("g.json", "g.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("argv", [["--threshold", "nan"], ["--threshold", "inf"]])
def test_segment_rejects_non_finite_threshold(tmp_path, argv):
    tool = Path(__file__).resolve().parents[1] / "tools" / "segment.py"
    result = subprocess.run([sys.executable, str(tool), "img.jpg", "--labels", "cat", *argv, "--model", "x",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode != 0 and "finite" in result.stderr and "Traceback" not in result.stderr


def test_make_tiny_checkpoint_rejects_a_bad_width(tmp_path):
    tool = Path(__file__).resolve().parents[1] / "tools" / "make_tiny_checkpoint.py"
    result = subprocess.run([sys.executable, str(tool), str(tmp_path / "t"), "--hidden", "30"], capture_output=True, text=True)
    assert result.returncode != 0 and "multiple of 4" in result.stderr and not (tmp_path / "t").exists()


def test_write_all_leaves_no_partial_set(tmp_path):
    from fgdense.viz import write_all, write_text

    def broken(tmp):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_all([(tmp_path / "a.png", write_text("a")), (tmp_path / "b.json", broken)])
    assert list(tmp_path.iterdir()) == []  # neither the finished first file nor any temporary one
