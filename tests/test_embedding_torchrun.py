"""torchrun, two CPU processes (gloo): the retrieval evaluation reports what one process reports, and a
search index built by two processes is the index one process builds."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import CHECKPOINT
from test_bulk_torchrun import free_port
from test_eval_retrieval import write_set

ROOT = Path(__file__).resolve().parents[1]


def launch(processes: int, tool: str, *args) -> subprocess.CompletedProcess:
    head = [sys.executable, str(ROOT / "tools" / tool)]
    if processes > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
                str(free_port()), str(ROOT / "tools" / tool)]
    done = subprocess.run(head + [str(a) for a in args] + ["--model", str(CHECKPOINT), "--device", "cpu", "--quiet",
                                                           "--workers", "0"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_retrieval_and_search_index_under_torchrun_equal_one_process(tmp_path):
    ann, images, _ = write_set(tmp_path, "flickr")
    reports = []
    for processes in (1, 2):
        out = tmp_path / f"ret{processes}"
        launch(processes, "eval_retrieval.py", "--ann", ann, "--protocol", "flickr", "--images", images, "--out", out)
        reports.append(json.loads((out / "report.json").read_text()))
        assert len(list((out / "records").glob("*.json"))) == 11  # each image once across the ranks
    keys = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "images", "captions"]
    assert [reports[1][k] for k in keys] == [reports[0][k] for k in keys]
    arrays = []
    for processes in (1, 2):
        index = tmp_path / f"index{processes}"
        launch(processes, "search.py", "index", images, "--out", index)
        arrays.append(np.load(index / "images.npy"))
        assert len(json.loads((index / "index.json").read_text())["images"]) == 11
    np.testing.assert_allclose(arrays[1], arrays[0], atol=1e-6)
