"""The dense benchmark: its official formulation is the official maths, and the tool reports, not crashes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import benchmark_dense, harness
from benchmarks.dense import dense_markdown, dense_ratios, measure_dense
from benchmarks.harness import OUT_OF_MEMORY, random_inputs, random_model, run_isolated
from benchmarks.reference import official_4d_mask, official_dense_features
from fgdense.dense import dense_grids

ROOT = Path(__file__).resolve().parents[1]


def run_tool(capsys, *args):
    """The benchmark's main() in this process (its measurements still run in child processes)."""
    code = benchmark_dense.main([*args, "--quiet"])
    return code, capsys.readouterr()


@pytest.mark.parametrize("patches", [16, 18])  # 4x4 grid: without and with 2 padding rows
def test_official_formulation_equals_fast_path(ref_model, patches):
    values, mask, shapes = random_inputs(patches, "cpu", seed=patches)
    assert int(mask.sum()) == 16 and values[0, 16:].abs().sum() == 0
    official = official_dense_features(ref_model, values, mask, shapes)
    assert official.shape == (1, patches, 64)
    grid = dense_grids(ref_model, values, shapes)[0]
    assert grid.shape == (4, 4, 64)
    assert torch.allclose(grid, official[0, :16].reshape(4, 4, -1), atol=1e-5)


def test_official_mask_is_the_full_additive_square_mask():
    mask = official_4d_mask(torch.tensor([[1, 1, 0]]), torch.float32)
    assert mask.shape == (1, 1, 3, 3)  # what made the official vision tower O(N^2) in memory
    assert (mask[..., :2] == 0).all() and (mask[..., 2] == torch.finfo(torch.float32).min).all()


def test_random_model_has_the_requested_architecture_and_dtype():
    model = random_model("tiny", "cpu", torch.bfloat16)
    vision = model.vision_model.config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (64, 2, 4)
    assert model.dtype == torch.bfloat16 and all(p.isfinite().all() for p in model.parameters())
    assert model.dense_feature_head.layernorm.weight.eq(1).all()


def test_tool_runs_both_paths_and_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "dense.json"
    code, done = run_tool(capsys, "--arch", "tiny", "--patches", "64", "--repeats", "2", "--warmup", "1",
                          "--device", "cpu", "--out", str(out))
    assert code == 0, done.err
    report = json.loads(out.read_text())
    assert report["machine"]["device"] == "cpu" and report["machine"]["cpu_cores"] >= 1
    assert report["settings"]["peak_memory"] == "process peak RSS"
    rows = {row["path"]: row for row in report["results"]}
    assert set(rows) == {"fast", "official"}
    for row in rows.values():
        assert row["status"] == "ok" and row["grid"] == [8, 8]
        assert len(row["seconds"]) == 2 and row["median_s"] > 0 and row["peak_bytes"] >= row["baseline_bytes"] > 0
    [ratio] = report["ratios"]
    assert ratio["time"] == pytest.approx(rows["fast"]["median_s"] / rows["official"]["median_s"])
    markdown = out.with_suffix(".md").read_text()
    assert markdown in done.out and "Machine: CPU:" in markdown
    row_line = next(line for line in markdown.splitlines() if line.startswith("| 64 |"))
    assert len(row_line.strip("|").split("|")) == 8 and f"{ratio['time']:.2f}x" in row_line
    assert "fast/official time" in done.out
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_impossible_memory_cap_reads_out_of_memory(tmp_path, capsys):
    out = tmp_path / "oom.json"
    # The official path's (heads, N, N) mask alone is 256 MiB here; the cap is 1 MiB.
    code, done = run_tool(capsys, "--arch", "tiny", "--patches", "4096", "--paths", "official", "--repeats", "1",
                          "--warmup", "0", "--device", "cpu", "--memory-cap", "0.001", "--out", str(out))
    assert code == 0, done.err
    report = json.loads(out.read_text())
    assert [row["status"] for row in report["results"]] == [OUT_OF_MEMORY]
    assert report["ratios"] == []
    row_line = next(line for line in out.with_suffix(".md").read_text().splitlines() if line.startswith("| 4096 |"))
    assert row_line == f"| 4096 | 64x64 | not measured | {OUT_OF_MEMORY} | n/a | not measured | {OUT_OF_MEMORY} | n/a |"


@pytest.mark.parametrize("args, message", [
    (["--patches", "2"], "--patches"),
    (["--out", "results.txt"], ".json"),
    (["--out", "no/such/folder/x.json"], "does not exist"),
    (["--memory-cap", "0"], "--memory-cap"),
])
def test_tool_rejects_bad_arguments_in_one_line(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert benchmark_dense.main(args) != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_script_runs_from_any_folder_and_fails_in_one_line(tmp_path):
    """``python benchmarks/benchmark_dense.py`` finds fgdense and benchmarks without installing or PYTHONPATH."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "benchmark_dense.py"), "--patches", "2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == ["error: --patches must be at least 4 each"]


def test_isolated_measurements_are_importable_functions():
    assert harness.measurement_name(measure_dense) == "benchmarks.dense:measure_dense"
    with pytest.raises(ValueError, match="top-level function"):
        harness.measurement_name(lambda spec: spec)


def _completed(returncode, stdout="", stderr=""):
    return subprocess.CompletedProcess([], returncode, stdout, stderr)


@pytest.mark.parametrize("outcome, status", [
    (_completed(-9), OUT_OF_MEMORY),  # killed by the out-of-memory killer
    (_completed(1, stderr="Traceback ...\nRuntimeError: CUDA out of memory. Tried to allocate 6 GiB"), OUT_OF_MEMORY),
    (_completed(1, stderr="Traceback ...\nKeyError: 'nope'"), "error"),
    (subprocess.TimeoutExpired("python", 5), "timed out"),
])
def test_run_isolated_turns_child_failures_into_results(monkeypatch, outcome, status):
    def fake_run(*args, **kwargs):
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(harness.subprocess, "run", fake_run)
    result = run_isolated(measure_dense, {"arch": "tiny"}, timeout=5)
    assert result["status"] == status and result["detail"]


def test_markdown_marks_missing_and_failed_cells():
    ok = dict(status="ok", median_s=0.5, ms_per_image=500.0, peak_bytes=2 * 1024**3)
    rows = [
        dict(arch="base", patches=1024, path="fast", **ok),
        dict(arch="base", patches=1024, path="official", **dict(ok, median_s=1.0, ms_per_image=1000.0, peak_bytes=8 * 1024**3)),
        dict(arch="base", patches=16384, path="fast", **ok),
        dict(arch="base", patches=16384, path="official", status=OUT_OF_MEMORY),
    ]
    report = dict(machine=dict(device="cuda", gpu="Test GPU", gpu_memory_bytes=80 * 1024**3, torch="2"),
                  settings=dict(device="cuda", dtype="bf16", repeats=10, warmup=3), results=rows,
                  ratios=dense_ratios(rows))
    lines = dense_markdown(report).splitlines()
    assert "GPU: Test GPU (80.0 GiB)" in lines[2] and "max_memory_allocated" in lines[2]
    assert lines[6] == "| 1024 | 32x32 | 500.0 | 1000.0 | 0.50x | 2.00 GiB | 8.00 GiB | 0.25x |"
    assert lines[7] == f"| 16384 | 128x128 | 500.0 | {OUT_OF_MEMORY} | n/a | 2.00 GiB | {OUT_OF_MEMORY} | n/a |"
