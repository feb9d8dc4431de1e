"""FG-OVD evaluation: per-box outcomes and accuracy equal to the official fgovd_bbox_roi.py formulation
(benchmarks/reference.py), exactly; ties right; bad lines one error; the tool's report, resume and
--plot (the wrong boxes, worst first)."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.reference import official_fgovd
from conftest import CHECKPOINT
from fgdense import BoxClassifier, FGCLIP2ImageProcessor, FGCLIP2Model, load_tokenizer
from fgdense.errors import DatasetError, FGDenseError
from fgdense.evaluation.fgovd import evaluate_fgovd, load_fgovd
from fgdense.evaluation.fgovd_plot import THUMB, worst_boxes, worst_lines

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ["Red", "dark Green", "light blue", "黄色", "Purple", "白色", "Grey"]
THINGS = ["plastic pipe", "wooden chair", "杯子", "Metal Cup", "glass bottle"]


@pytest.fixture(scope="module")
def parts():
    return (FGCLIP2Model.from_pretrained(CHECKPOINT), FGCLIP2ImageProcessor.from_pretrained(CHECKPOINT),
            load_tokenizer(CHECKPOINT))


def make_set(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Four images under val2017/, 14 boxes with 1-2 positives and 3-6 negatives each, one image's lines
    apart in the file, one box whose negative repeats its positive (a tie: right)."""
    rng = np.random.default_rng(seed)
    (root / "images" / "val2017").mkdir(parents=True)
    sizes = [(60, 80), (120, 90), (48, 150), (100, 100)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / "val2017" / f"{i}.png")
    lines = []
    for n in range(14):
        i = [0, 1, 2, 3, 0][n % 5]
        h, w = sizes[i]
        bw, bh = rng.integers(6, w // 2), rng.integers(6, h // 2)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        texts = [f"A {rng.choice(COLOURS)} {rng.choice(THINGS)}." for _ in range(int(rng.integers(4, 9)))]
        positives = texts[: 1 + n % 2]
        negatives = texts[1 + n % 2 :] + ([positives[0]] if n == 6 else [])
        lines.append({"img_path": f"val2017/{i}.png", "bbox": [round(x, 2), round(y, 2), float(bw), float(bh)],
                      "pos_expression": positives, "neg_expression": negatives, "category_id": 0})
    ann = root / "attributes.jsonl"
    ann.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return ann, root / "images"


def test_outcomes_and_accuracy_equal_the_official_protocol(tmp_path, parts):
    model, processor, tokenizer = parts
    ann, images = make_set(tmp_path)
    report = evaluate_fgovd(BoxClassifier(*parts, precision="fp32"), ann, images, out=tmp_path / "out", progress=False)
    expected = official_fgovd(model, processor, tokenizer, ann, images)
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [line["line"] for line in lines] == list(range(1, 15))
    assert [line["right"] for line in lines] == expected["outcomes"]
    np.testing.assert_allclose([line["first"] for line in lines], expected["first"], atol=2e-6)
    np.testing.assert_allclose([line["best_prob"] for line in lines], expected["best_prob"], atol=2e-6)
    assert report["accuracy"] == expected["accuracy"] and report["boxes"] == expected["count"] == 14
    assert report["images"] == 4 and report["boxes_skipped"] == 0
    assert lines[6]["right"]  # its positive is also among its negatives: a tie, right
    assert 0 < report["accuracy"] < 1


def test_unusable_boxes_and_images_are_counted_not_scored(tmp_path, parts):
    ann, images = make_set(tmp_path)
    rows = [json.loads(line) for line in ann.read_text().splitlines()]
    rows[2]["bbox"] = [5.0, 5.0, 0.0, 10.0]  # zero width
    rows.append(dict(rows[0], img_path="val2017/gone.png"))
    ann.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = evaluate_fgovd(BoxClassifier(*parts), ann, images, progress=False)
    assert report["boxes"] == 13 and report["boxes_skipped"] == 2
    assert report["images_skipped"] == 1 and report["skipped_by_reason"] == {"missing_image": 1}


def test_a_malformed_line_is_one_error_naming_it(tmp_path):
    ann = tmp_path / "bad.jsonl"
    ann.write_text('{"img_path": "a.png", "bbox": [1, 2, 3, 4], "pos_expression": ["x"], "neg_expression": []}\n'
                   '{"img_path": "a.png", "bbox": [1, 2, 3], "pos_expression": ["x"], "neg_expression": []}\n')
    with pytest.raises(DatasetError, match="line 2"):
        load_fgovd(ann)
    ann.write_text('{"img_path": "a.png", "bbox": [1, 2, 3, 4], "pos_expression": [], "neg_expression": ["y"]}\n')
    with pytest.raises(DatasetError, match="positive"):
        load_fgovd(ann)


def test_the_tool_writes_the_report_and_resumes(tmp_path):
    ann, images = make_set(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "tools" / "eval_fgovd.py"), "--ann", str(ann), "--images", str(images),
               "--model", str(CHECKPOINT), "--out", str(out), "--device", "cpu", "--quiet", "--workers", "0"]
    first = subprocess.run(command + ["--plot"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert f"plot written to {out / 'plot.png'}" in first.stdout
    with Image.open(out / "plot.png") as plot:
        plot.verify()  # a whole PNG
    with Image.open(out / "plot.png") as plot:
        assert plot.format == "PNG" and plot.height > 2 * THUMB  # rows of wrong boxes: the set has some
    report = json.loads((out / "report.json").read_text())
    assert report["boxes"] == 14 and report["lines"] == 14 and 0 <= report["accuracy"] <= 1
    assert "FG-OVD: accuracy" in first.stdout
    (out / "report.json").unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")} == stamps
    assert json.loads((out / "report.json").read_text())["accuracy"] == report["accuracy"]


def outcome(line, right, first, best=1, best_prob=None):
    row = {"line": line, "right": right, "first": first, "best": 0 if right else best}
    return row if best_prob is None else dict(row, best_prob=best_prob)


def test_the_worst_lines_are_the_wrong_ones_beaten_by_most_first():
    predictions = [outcome(1, True, 0.9, best_prob=0.9), outcome(2, False, 0.1, best_prob=0.5),
                   {"line": 3, "skipped": "degenerate_box", "detail": ""}, outcome(4, False, 0.05, best_prob=0.9),
                   outcome(5, False, 0.3, best=2, best_prob=0.4), outcome(6, False, 0.2),  # an older record
                   outcome(7, False, 0.5, best_prob=0.9), outcome(8, True, 0.01, best_prob=0.01)]
    assert [p["line"] for p in worst_lines(predictions)] == [4, 2, 7, 5, 6]  # 7 ties 2 (0.4): file order
    assert [p["line"] for p in worst_lines(predictions, 2)] == [4, 2]
    assert worst_lines([p for p in predictions if p.get("right", True)]) == []


def drawn_words(monkeypatch) -> list[str]:
    """Every text the picture draws, in order (the words say which rows were chosen)."""
    from PIL import ImageDraw

    words = []
    for name in ("text", "multiline_text"):
        original = getattr(ImageDraw.ImageDraw, name)

        def record(self, xy, text, *args, _original=original, **kwargs):
            words.append(text)
            return _original(self, xy, text, *args, **kwargs)
        monkeypatch.setattr(ImageDraw.ImageDraw, name, record)
    return words


def test_the_picture_shows_the_worst_boxes_in_order_with_their_texts(tmp_path, monkeypatch):
    ann, images = make_set(tmp_path)
    lines = load_fgovd(ann)
    predictions = [outcome(n, True, 0.9, best_prob=0.9) for n in range(1, 15)]
    predictions[2] = outcome(3, False, 0.2, best=lines[2].positives, best_prob=0.7)
    predictions[9] = outcome(10, False, 0.01, best=lines[9].positives + 1, best_prob=0.98)
    words = drawn_words(monkeypatch)
    sheet = worst_boxes(predictions, lines, images)
    labels = [w for w in words if w.startswith("line ")]
    assert labels == ["line 10: beaten by 0.970", "line 3: beaten by 0.500"]
    assert "2 of 14 boxes wrong" in words[0]
    body = "\n".join(words)
    assert body.index(lines[9].texts[lines[9].positives + 1]) < body.index(lines[2].texts[lines[2].positives])
    assert sheet.height > 2 * THUMB


def test_a_run_with_every_box_right_draws_a_sheet_saying_so(tmp_path, monkeypatch):
    ann, images = make_set(tmp_path)
    lines = load_fgovd(ann)
    words = drawn_words(monkeypatch)
    sheet = worst_boxes([outcome(n, True, 0.9, best_prob=0.9) for n in range(1, 15)], lines, images)
    assert "every box was right" in words and "0 of 14 boxes wrong" in words[0]
    assert not any(w.startswith("line ") for w in words) and sheet.height < 2 * THUMB


def test_a_long_or_many_lined_text_keeps_to_its_rows_and_shows_it_is_cut(tmp_path, monkeypatch):
    """A text is shown in at most TEXT_LINES lines inside the sheet: the mark of a cut text ("…")
    used to be drawn past the sheet's right edge, and a short text of many lines ("a\nb\n...") was drawn
    whole, over the rows below."""
    from fgdense.evaluation.fgovd_plot import TEXT_LINES, TEXT_WIDTH
    from fgdense.io.fonts import lettering_for

    ann, images = make_set(tmp_path)
    rows = [json.loads(row) for row in ann.read_text().splitlines()]
    rows[0]["pos_expression"], rows[0]["neg_expression"] = ["x" * 10000], ["\n".join("abcdefgh")]
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lines = load_fgovd(ann)
    words = drawn_words(monkeypatch)
    worst_boxes([outcome(1, False, 0.1, best=1, best_prob=0.9)], lines, images)
    face = lettering_for(None, lines[0].texts).font(14)
    drawn = [w for w in dict.fromkeys(words) if w.startswith(("x", "a"))]
    parts = {part for w in drawn if "\n" in w for part in w.split("\n")}  # multiline_text draws each by text
    shown = [w.split("\n") for w in drawn if w not in parts]
    assert len(shown) == 2, words
    for text in shown:
        assert len(text) <= TEXT_LINES and all(face.getlength(part) <= TEXT_WIDTH - 8 for part in text), text
    assert shown[0][-1].endswith("\u2026") and shown[1] == ["a b c d e f g h"]


def run_tool_here(capsys, *argv) -> tuple[int, list[str]]:
    """The tool in this process (no second torch import): its exit code and its stderr lines."""
    spec = importlib.util.spec_from_file_location("eval_fgovd_tool", ROOT / "tools" / "eval_fgovd.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    code = tool.main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


def test_the_tool_checks_the_plot_path_and_font_before_any_work(tmp_path, capsys):
    ann, images = make_set(tmp_path)
    (tmp_path / "out" / "plot.png").mkdir(parents=True)  # a folder where the plot would go
    never = ["--images", images, "--model", "never-loaded", "--plot"]
    code, err = run_tool_here(capsys, "--ann", ann, "--out", tmp_path / "out", *never)
    assert code != 0 and len(err) == 1 and "plot.png is a folder" in err[0], err
    code, err = run_tool_here(capsys, "--ann", ann, "--out", tmp_path / "o2", "--font", tmp_path / "nope.otf", *never)
    assert code != 0 and len(err) == 1 and "nope.otf does not exist" in err[0], err
    ann.rename(tmp_path / "plot.png")  # the annotation file, named as the plot would be
    code, err = run_tool_here(capsys, "--ann", tmp_path / "plot.png", "--out", tmp_path, *never)
    assert code != 0 and len(err) == 1 and "is the annotation file" in err[0], err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "report.json").exists()


def test_the_tool_never_writes_over_an_image_it_reads(tmp_path, capsys):
    """An image of the set named plot.png in the output folder (--out the images folder) was replaced by
    the picture: an input written over. The tool stops in one line before any work."""
    ann, images = make_set(tmp_path)
    shutil.copy(images / "val2017" / "0.png", images / "val2017" / "plot.png")
    before = (images / "val2017" / "plot.png").read_bytes()
    ann.write_text(ann.read_text().replace("val2017/0.png", "val2017/plot.png"), encoding="utf-8")
    code, err = run_tool_here(capsys, "--ann", ann, "--images", images, "--out", images / "val2017", "--plot",
                              "--model", CHECKPOINT)
    assert code != 0 and len(err) == 1 and "plot.png is an image" in err[0], err
    assert (images / "val2017" / "plot.png").read_bytes() == before


def test_a_picture_that_fails_leaves_the_report_written(tmp_path, capsys, monkeypatch):
    ann, images = make_set(tmp_path)

    def fails(*args, **kwargs):
        raise FGDenseError("the picture failed")
    monkeypatch.setattr("fgdense.evaluation.fgovd_plot.worst_boxes", fails)
    code, err = run_tool_here(capsys, "--ann", ann, "--images", images, "--model", CHECKPOINT, "--out",
                              tmp_path / "out", "--device", "cpu", "--quiet", "--workers", "0", "--plot")
    assert code != 0 and err == ["error: the picture failed"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["boxes"] == 14
    assert not (tmp_path / "out" / "plot.png").exists()
