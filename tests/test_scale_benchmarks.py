"""The throughput and precision benchmarks run end to end at toy sizes and print their tables."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_benchmark_runs_the_real_command(tmp_path):
    out = tmp_path / "throughput.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "benchmark_throughput.py"), "--arch", "tiny",
                           "--images", "3", "--size", "96x64", "--max-patches", "64", "--processes", "1",
                           "--workers", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| processes | images/s (run)" in done.stdout and "load average" in done.stdout
    row = json.loads(out.read_text())["rows"][0]
    assert row["status"] == "ok" and row["images"] == 3 and row["images_per_s"] > 0
    assert set(row["seconds_per_image"]) == {"decode", "model", "write", "waiting"}


def test_precision_benchmark_compares_bf16_with_fp32_and_checks_every_task(tmp_path):
    out = tmp_path / "precision.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "benchmark_precision.py"), "--arch", "tiny",
                           "--patches", "64", "--repeats", "1", "--tasks", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [row["precision"] for row in result["dense"]] == ["fp32", "bf16 autocast", "bf16 weights"]
    assert 0 < result["dense"][1]["max_abs_diff"] < 0.01
    assert len(result["tasks"]) == 8 and all(row["pass"] for row in result["tasks"])
    assert "CPU bf16 flags" in done.stdout
