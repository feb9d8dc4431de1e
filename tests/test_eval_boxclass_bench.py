"""benchmarks/benchmark_boxclass.py runs end to end (tiny architecture) and its three paths agree."""

import json

from benchmarks import benchmark_boxclass


def test_benchmark_runs_and_paths_agree(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = benchmark_boxclass.main(["--arch", "tiny", "--images", "3", "--boxes", "10", "--reference-images", "1",
                                    "--workers", "0", "--device", "cpu", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert 3 * 8 <= result["annotations"] <= 3 * 12  # about --boxes per image
    assert 8 <= result["reference_annotations"] <= 12
    for key in ("fgdense_ann_per_s", "official_per_image_ann_per_s", "official_per_annotation_ann_per_s"):
        assert result[key] > 0
    # fp32 on CPU: the fast path predicts exactly what the official computations predict.
    assert result["top1_agreement_with_per_image"] == 1.0
    assert result["top1_agreement_with_per_annotation"] == 1.0
    assert "ann/s" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*tmp"))  # written whole, no temporary file left


def test_benchmark_rejects_bad_arguments(capsys):
    assert benchmark_boxclass.main(["--arch", "tiny", "--images", "2", "--reference-images", "3"]) != 0
    assert "reference-images" in capsys.readouterr().err
