"""Training refuses what would train on nothing, fail deep inside mmengine, or read or run what the user
never pointed it at: one line, exit 1, and (where it can be known before training) nothing written."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from _train_helpers import COCO_TINY_CONFIG, make_coco_config, make_world, run_tool
from fgdense.errors import DatasetError


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("refusals") / "world", num_train=8)


def args(checkpoint, world, work, *options, resume=False, image_root=None, ann_file=None):
    return [str(COCO_TINY_CONFIG), *(["--resume"] if resume else []), "--cfg-options", f"checkpoint={checkpoint}",
            f"ann_file={ann_file or world['train_ann']}", f"image_root={image_root or world['train_images']}",
            f"work_dir={work}", *options]


def unreadable_copy(world, folder: Path) -> Path:
    """The world's training images under ``folder``, each replaced by bytes no decoder reads."""
    folder.mkdir()
    for image in Path(world["train_images"]).iterdir():
        (folder / image.name).write_bytes(b"not an image")
    return folder


def one_line_error(code, err) -> str:
    assert code == 1 and "Traceback" not in err, err[-3000:]
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("option, problem", [
    ("max_iters=0", "max_iters must be a whole number >= 1, got 0"),
    ("max_iters=-1", "max_iters must be a whole number >= 1, got -1"),
    ("batch_size=0", "batch_size must be a whole number from 1 to 4096, got 0"),
    ("lr=1e308", "lr must be a number above 0 and at most 1, got 1e+308"),
    ("lr=-0.001", "lr must be a number above 0 and at most 1, got -0.001"),
    ("warmup_iters=-5", "warmup_iters must be a whole number >= 0, got -5"),
    ("train_dataloader.num_workers=100000", "train_dataloader.num_workers 100000 is more than this machine can run"),
    ("train_dataloader.num_workers=-1", "num_workers must be a whole number >= 0, got -1"),
])
def test_settings_that_cannot_train_are_refused_before_anything_is_written(world, tiny_checkpoint, tmp_path, option,
                                                                           problem):
    work = tmp_path / "work"
    code, err = run_tool(args(tiny_checkpoint, world, work, option))
    line = one_line_error(code, err)
    # The workers' bound depends on the machine: the line goes on with it ("at most N (...)").
    assert line == f"error: {problem}" or (problem.endswith("can run") and line.startswith(f"error: {problem}: at most "))
    assert not work.exists()


def test_work_dirs_that_cannot_or_must_not_hold_a_run(world, tiny_checkpoint, tmp_path, read_only):
    # The annotation file does not exist: a run that did not check its work dir first would stop on
    # that instead (and, unchecked, write into / or the home folder).
    missing = tmp_path / "missing.json"
    afile = tmp_path / "afile"
    afile.write_text("mine")
    (tmp_path / "locked").mkdir()
    locked = read_only(tmp_path / "locked")
    cases = {str(afile): f"work_dir {afile} is a file, not a folder",
             str(locked): f"cannot write to the output folder {locked}"}
    for system in ("/", "/usr", str(Path.home())):
        cases[system] = f"work_dir {system} is a system folder"
    for work, problem in cases.items():
        code, err = run_tool(args(tiny_checkpoint, world, work, ann_file=missing))
        assert one_line_error(code, err).startswith(f"error: {problem}"), work
    assert afile.read_text() == "mine" and not any(locked.iterdir())


def test_an_image_root_of_unreadable_files_is_refused_before_training(world, tiny_checkpoint, tmp_path):
    corrupt = unreadable_copy(world, tmp_path / "corrupt")
    work = tmp_path / "work"
    code, err = run_tool(args(tiny_checkpoint, world, work, "max_iters=2", image_root=corrupt))
    line = one_line_error(code, err)
    assert line.startswith("error: none of the 8 training images tried can be read (e.g. cannot read ")
    assert line.endswith("check image_root: there would be nothing to train on") and not work.exists()


def test_a_data_pass_without_one_readable_image_stops_the_run(world, tiny_checkpoint, tmp_path):
    """Images readable when the run starts and gone when they are read: the pass trained on nothing."""
    from fgdense.train.runner import build_runner, build_train_dataset

    images = tmp_path / "images"
    shutil.copytree(world["train_images"], images)
    cfg = make_coco_config(tiny_checkpoint, dict(world, train_images=str(images)), tmp_path / "work", 2)
    dataset = build_train_dataset(cfg)
    for image in images.iterdir():
        image.write_bytes(b"gone")
    runner = build_runner(cfg, dataset)
    with pytest.raises(DatasetError, match=r"data pass 0: all \d+ images read were missing or unreadable, nothing "
                                           "was trained on; check image_root"):
        runner.train()
    assert not (tmp_path / "work" / "export").exists()


def test_file_names_outside_the_image_root_are_never_opened(world, tmp_path):
    from fgdense.train.coco import CocoRegionDataset

    data = json.loads(Path(world["train_ann"]).read_text())
    outside = tmp_path / "outside.png"
    shutil.copy(Path(world["train_images"]) / data["images"][0]["file_name"], outside)
    data["images"][0]["file_name"] = "../../" + outside.name
    data["images"][1]["file_name"] = str(outside)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    images = tmp_path / "a" / "b"
    shutil.copytree(world["train_images"], images)
    ds = CocoRegionDataset(ann, images, progress=False)
    assert ds.report["skipped"]["outside_image_root"] == 2
    assert outside not in {im.path for im in ds.images} and len(ds.images) == len(data["images"]) - 2
    assert "outside_image_root 2" in ds.summary()


def test_a_finehard_path_outside_the_image_root_is_refused(tmp_path):
    from fgdense.errors import FineHARDError
    from fgdense.train.data import FineHARDDataset

    record = {"f_path": "../secret.png", "caption": "a cat", "short_caption": "cat",
              "bbox_info": [{"bbox": [0.1, 0.1, 0.5, 0.5], "long_expr": "a cat"}]}
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps(record) + "\n")
    (tmp_path / "images").mkdir()
    with pytest.raises(FineHARDError, match=r"record 0: 'f_path' '../secret.png' leads outside the image root"):
        FineHARDDataset(ann, tmp_path / "images", progress=False)


def test_help_says_the_config_is_python_that_runs(capsys):
    from _train_helpers import REPO
    import runpy

    main = runpy.run_path(str(REPO / "tools" / "train_stage2.py"))["main"]
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a Python file, run when it is read (its _base_ files too)" in text
    assert "only with configs you wrote or trust" in text
    docs = " ".join((REPO / "docs" / "training.md").read_text(encoding="utf-8").split())
    assert "a Python file, run when it is read" in docs


# ----------------------------------------------------------------------------------------- resuming
@pytest.fixture(scope="module")
def trained(world, tiny_checkpoint, tmp_path_factory):
    """A work dir after one training step: iter_1.pth, and last_checkpoint naming it by its absolute path."""
    work = tmp_path_factory.mktemp("trained") / "work"
    code, err = run_tool(args(tiny_checkpoint, world, work, "max_iters=1"))
    assert code == 0, err[-3000:]
    assert (work / "last_checkpoint").read_text().strip() == str(work / "iter_1.pth")
    return work


def new_log(work, before) -> str:
    """The log of the run in ``work`` that was not copied from ``before``."""
    copied = {p.relative_to(before) for p in Path(before).glob("*/*.log")}
    return "\n".join(p.read_text() for p in Path(work).glob("*/*.log") if p.relative_to(work) not in copied)


def test_a_copied_work_dir_resumes_from_its_own_checkpoint(world, tiny_checkpoint, trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    code, err = run_tool(args(tiny_checkpoint, world, copy, "max_iters=2", resume=True))
    assert code == 0, err[-3000:]
    log = new_log(copy, trained)
    assert f"Load checkpoint from {copy / 'iter_1.pth'}" in log and str(trained) not in log
    assert (copy / "iter_2.pth").is_file() and not (trained / "iter_2.pth").exists()

    bare = tmp_path / "bare"
    shutil.copytree(trained, bare, ignore=shutil.ignore_patterns("*.pth"))
    for how in ({"resume": True}, {}):  # --resume, or resume=True in the config
        options = ["max_iters=2"] + ([] if how else ["resume=True"])
        code, err = run_tool(args(tiny_checkpoint, world, bare, *options, **how))
        assert one_line_error(code, err) == (f"error: cannot resume: {bare / 'last_checkpoint'} names "
                                             f"{trained / 'iter_1.pth'}, outside {bare}, which holds no iter_1.pth; "
                                             "resume in the folder that holds it, or start afresh"), how


class RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(RunsCode.sentinel),))


def _planted(work, content) -> Path:
    work.mkdir()
    torch.save(content, work / "iter_1.pth")
    (work / "last_checkpoint").write_text(str(work / "iter_1.pth"))
    return work


def test_resume_checkpoints_that_are_not_this_runs_are_refused_and_never_run(world, tiny_checkpoint, trained,
                                                                             tmp_path):
    sentinel = tmp_path / "ran"
    RunsCode.sentinel = str(sentinel)
    good = torch.load(trained / "iter_1.pth", weights_only=True)
    with_config = dict(good, meta=dict(good["meta"], config=f"x = __import__('pathlib').Path({str(sentinel)!r}).touch()"))
    cases = {
        "pickle": ({"state_dict": RunsCode()}, "it holds Python objects beyond a training checkpoint's plain data; "
                                              "fgdense refuses to load it"),
        "plain": ({"weights": torch.zeros(2)}, "it is not an fgdense training checkpoint (no meta, state_dict, "
                                               "optimizer, message_hub)"),
        "config": (with_config, "it carries a config, which mmengine would run as Python; fgdense never writes one "
                                "and does not load it"),
    }
    for name, (content, problem) in cases.items():
        work = _planted(tmp_path / name, content)
        before = sorted(p.name for p in work.iterdir())
        code, err = run_tool(args(tiny_checkpoint, world, work, "max_iters=2", resume=True))
        assert one_line_error(code, err) == f"error: cannot resume from {work / 'iter_1.pth'}: {problem}", name
        assert sorted(p.name for p in work.iterdir()) == before and not sentinel.exists(), name


def test_a_checkpoint_of_another_model_is_refused_in_one_line(world, trained, tmp_path):
    from fgdense.tiny import make_tiny_checkpoint

    other = make_tiny_checkpoint(tmp_path / "other", seed=0, hidden=32, layers=1, heads=2)
    work = tmp_path / "work"
    shutil.copytree(trained, work)
    code, err = run_tool(args(other, world, work, "max_iters=2", resume=True))
    line = one_line_error(code, err)
    assert line.startswith(f"error: cannot resume from {work / 'iter_1.pth'}: it is the checkpoint of another model")
    assert not (work / "iter_2.pth").exists()


@pytest.mark.slow
def test_under_torchrun_every_process_ends_with_one_line(world, tiny_checkpoint, tmp_path):
    import os
    import subprocess
    import sys

    from _train_helpers import REPO
    from test_train_distributed import free_port

    corrupt = unreadable_copy(world, tmp_path / "corrupt")
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(REPO / "tools" / "train_stage2.py"), "--launcher", "pytorch",
           *args(tiny_checkpoint, world, work, "max_iters=2", image_root=corrupt)]
    result = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    # Each process ends with one line of its own: the refusal, or, where torchrun stopped it after the other
    # refused first, the SIGTERM line. A line holding two messages is two processes' lines run together.
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error: ", "interrupted (SIGTERM)"))]
    refusal = "none of the 8 training images tried can be read"
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[0].count(refusal) == 1, lines
    assert lines[1].count(refusal) == 1 or (lines[1].startswith("interrupted (SIGTERM)") and "error" not in lines[1])
    assert "Connection closed" not in result.stderr and not work.exists()
