"""Every evaluation tool is a run on the bulk runner: the same command again resumes (skips what is
recorded), --overwrite redoes it, and under torchrun the report equals one process's."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_eval_grounding import write_coco
from test_eval_segmentation import write_folder_dataset

ROOT = Path(__file__).resolve().parents[1]


def segmentation_args(tmp_path, checkpoint):
    root = write_folder_dataset(tmp_path / "seg")
    return ["eval_segmentation.py", "--images", str(root / "images"), "--masks", str(root / "labels"), "--classes",
            str(root / "classes.txt"), "--background-class", "background", "--max-patches", "16",
            "--model", str(checkpoint)]


def grounding_args(tmp_path, checkpoint):
    ann = write_coco(tmp_path / "ground")
    return ["eval_grounding.py", "--ann", str(ann), "--images", str(tmp_path / "ground" / "images"),
            "--model", str(checkpoint)]


MAKERS = {"segmentation": segmentation_args, "grounding": grounding_args}


def run(argv, out, processes=1):
    tool = str(ROOT / "tools" / argv[0])
    launch = [sys.executable, tool] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), tool]
    done = subprocess.run(launch + argv[1:] + ["--out", str(out), "--workers", "0", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "report.json").read_text(encoding="utf-8")), done


def run_here(argv, out):
    """The tool as a function, in this process (no start-up to pay for each run)."""
    spec = importlib.util.spec_from_file_location(f"tool_{argv[0][:-3]}", ROOT / "tools" / argv[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(argv[1:] + ["--out", str(out), "--workers", "0", "--quiet"]) == 0
    return json.loads((out / "report.json").read_text(encoding="utf-8")), None


def stamps(out: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}


@pytest.mark.parametrize("kind", MAKERS)
def test_the_same_command_again_resumes_and_overwrite_redoes(tmp_path, tiny_checkpoint, kind):
    argv = MAKERS[kind](tmp_path, tiny_checkpoint)
    out = tmp_path / "out"
    report, _ = run_here(argv, out)
    before = stamps(out)
    assert len(before) == 2  # segmentation: both images; grounding: the two images of two categories or more
    again, _ = run_here(argv, out)
    assert again == report and stamps(out) == before
    (out / "records" / sorted(before)[0]).unlink()  # an interrupted run: one record not there
    again, _ = run_here(argv, out)
    assert again == report and {k: v for k, v in stamps(out).items() if k in before and v == before[k]} == \
        {k: v for k, v in before.items() if k != sorted(before)[0]}
    redone, _ = run_here(argv + ["--overwrite"], out)
    assert redone == report and all(stamps(out)[name] != before[name] for name in before)


@pytest.mark.parametrize("kind", MAKERS)
def test_under_torchrun_the_report_equals_one_process(tmp_path, tiny_checkpoint, kind):
    argv = MAKERS[kind](tmp_path, tiny_checkpoint)
    single, _ = run(argv, tmp_path / "one")
    sharded, done = run(argv, tmp_path / "two", processes=2)
    assert sharded == single
    assert done.stdout.count("report written to") == 1  # rank 0 writes and prints it
