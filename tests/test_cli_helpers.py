"""Small shared pieces of the command-line tools: devices, output names and paths, quick --help."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fgdense.dense import pick_patch_budget
from fgdense.devices import resolve_device
from fgdense.errors import DeviceError, FGDenseError, OutputError
from fgdense.io.files import check_outputs, write_all, write_text

ROOT = Path(__file__).resolve().parents[1]
TOOLS = sorted((ROOT / "tools").glob("*.py"))


@pytest.mark.parametrize("name, message", [("gpu", "unknown device 'gpu'"), ("cuda:7", "CUDA"), ("mps", "not supported")])
def test_device_mistakes_are_fgdense_errors(name, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(name)


def test_the_api_refuses_cuda_on_a_machine_without_it():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from fgdense import Segmenter

    with pytest.raises(FGDenseError, match="CUDA is not available"):
        Segmenter.from_pretrained("never-loaded", device="cuda")


def test_outputs_on_an_input_or_on_each_other_are_refused(tmp_path):
    image = tmp_path / "gi.jpg"
    image.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    # Spellings pathlib does not collapse: "sub/.." and a link. Each still names the image.
    spelled = f"{tmp_path}/sub/../gi.jpg"
    assert str(Path(spelled)) != str(image)
    os.symlink(image, tmp_path / "link.jpg")
    for other in (spelled, tmp_path / "link.jpg"):
        with pytest.raises(OutputError, match="is the image"):
            check_outputs({"picture": other}, {"image": image})
    with pytest.raises(OutputError, match="is the image"):  # not there yet: spelled out, the same path
        check_outputs({"picture": f"{tmp_path}/sub/../later.jpg"}, {"image": tmp_path / "later.jpg"})
    with pytest.raises(OutputError, match="same file"):
        check_outputs({"JSON": tmp_path / "r.json", "picture": tmp_path / "r.json"})
    with pytest.raises(OutputError, match="folder of"):
        check_outputs({"JSON": tmp_path / "missing" / "r.json"})
    check_outputs({"JSON": tmp_path / "r.json", "picture": tmp_path / "r.png"}, {"image": image})
    assert image.read_bytes() == b"x"


def test_budgets_up_to_16384_are_honoured_and_larger_refused():
    from fgdense.config import check_budget

    assert pick_patch_budget(1000, 1000, 16384) == 16384
    assert pick_patch_budget(10, 3000, 9000) == 9000
    for bad in (16385, 100_000_000, 0, -3, 2.5, "lots", True):
        with pytest.raises(FGDenseError, match="from 1 to 16384"):
            check_budget(bad)


def test_box_tool_outputs_are_ordinary_files(tmp_path):
    from PIL import Image

    from fgdense.io.files import json_text, write_all, write_picture, write_text

    picture = Image.new("RGB", (4, 4))
    write_all([(tmp_path / "g.json", write_text(json_text({"a": 1}))), (tmp_path / "g.png", write_picture(picture))])
    umask = os.umask(0)
    os.umask(umask)
    for name in ("g.json", "g.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("argv", [["--threshold", "nan"], ["--threshold", "inf"]])
def test_segment_rejects_non_finite_threshold(tmp_path, argv):
    tool = Path(__file__).resolve().parents[1] / "tools" / "segment.py"
    (tmp_path / "img.jpg").write_bytes((ROOT / "docs" / "images" / "cat.jpg").read_bytes())
    result = subprocess.run([sys.executable, str(tool), "img.jpg", "--labels", "cat", *argv, "--model", "x",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and "finite" in result.stderr and "Traceback" not in result.stderr


def test_make_tiny_checkpoint_rejects_a_bad_width(tmp_path):
    tool = Path(__file__).resolve().parents[1] / "tools" / "make_tiny_checkpoint.py"
    result = subprocess.run([sys.executable, str(tool), str(tmp_path / "t"), "--hidden", "30"], capture_output=True, text=True)
    assert result.returncode != 0 and "multiple of 4" in result.stderr and not (tmp_path / "t").exists()


def test_write_all_leaves_no_partial_set(tmp_path):
    def broken(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot write .*b\.json: No space left"):
        write_all([(tmp_path / "a.png", write_text("a")), (tmp_path / "b.json", broken)])
    assert list(tmp_path.iterdir()) == []  # neither the finished first file nor any temporary one


def test_writing_onto_a_folder_names_the_folder_not_a_temporary_file(tmp_path):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(OutputError) as caught:
        write_all([(tmp_path / "out.json", write_text("a"))])
    assert "out.json is a folder" in str(caught.value) and ".tmp" not in str(caught.value)


@pytest.mark.parametrize("tool", TOOLS, ids=lambda p: p.name)
def test_every_tool_answers_help_in_under_a_second(tool):
    import time

    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0 and "usage:" in done.stdout
    assert elapsed < 1.0, f"{tool.name} --help took {elapsed:.2f} s"


def test_tools_share_the_flag_names():
    """Every tool that takes a model, a device, an output place or a precision spells it the same."""
    helps = {tool.name: subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True,
                                       timeout=60).stdout for tool in TOOLS}
    for name, text in helps.items():
        for old in ("--output ", "--max-num-patches", "--predictions"):
            assert old not in text, f"{name} still has {old}"
    for name in ("segment.py", "classify_boxes.py", "ground.py", "eval_boxclass.py", "eval_segmentation.py"):
        for flag in ("--model", "--out", "--device", "--precision", "--text-mask", "--quiet"):
            assert flag in helps[name], f"{name} lacks {flag}"
    for name in ("segment.py", "classify_boxes.py", "ground.py", "eval_segmentation.py"):
        assert "--max-patches" in helps[name], name
    for name in ("segment.py", "classify_boxes.py", "ground.py"):
        assert "--font" in helps[name], name


@pytest.mark.parametrize("tool, argv", [("segment.py", ["x.jpg", "--labels", "cat", "--precision", "fp33"]),
                                        ("eval_retrieval.py", ["--ann", "a.json", "--protocol", "lit_cn"]),
                                        ("train_stage2.py", [])])
def test_a_flag_argparse_cannot_read_is_one_line(tool, argv):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / tool), *argv], capture_output=True, text=True,
                          timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], lines
