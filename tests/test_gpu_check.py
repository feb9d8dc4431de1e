"""tools/gpu_check.py: one clear line without a GPU; on the CPU, its toy run goes through every step."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(TOOL), "--keep", str(tmp_path / "kept")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "needs a CUDA GPU" in lines[0], done.stderr
    assert done.stdout == "" and not (tmp_path / "kept").exists()  # nothing run, nothing written


@pytest.mark.slow
def test_the_toy_run_on_the_cpu_goes_through_every_step(tmp_path):
    done = subprocess.run([sys.executable, str(TOOL), "--cpu-smoke", "--budget", "900", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=1000)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    assert len(rows) == 7, done.stdout
    for row in rows:
        result = row.split("|")[2].strip()
        assert result and not result.startswith(("failed", "not run", "timed out", "no result")), row
    assert "PASS" in rows[0]


def test_a_spent_budget_skips_steps_and_says_so(tmp_path):
    done = subprocess.run([sys.executable, str(TOOL), "--cpu-smoke", "--budget", "1", "--only", "segment", "train"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("not run: the time budget is spent") == 2
