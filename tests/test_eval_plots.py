"""Pictures of evaluation reports: the confusion matrix shown is the right one, the PNG is a real picture,
Chinese names and characters no font has never stop it, and the tools' --plot writes it beside the report."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgdense.errors import FGDenseError
from fgdense.evaluation.boxclass_report import sparse_confusion
from fgdense.evaluation.plots import confusion_of, most_confused, plot_png, shown_matrix, worst_scores
from fgdense.evaluation.segmentation import FolderDataset, scores_from_confusion
from test_eval_segmentation import colour_reader, evaluate, load_tool, write_folder_dataset

ROOT = Path(__file__).resolve().parents[1]
SEG_TOOL = ROOT / "tools" / "eval_segmentation.py"


def boxclass_report(names, confusion, ids=None):
    """A box-classification report as build_report writes it, from {true id: {predicted id: count}}."""
    ids = ids or list(range(1, len(names) + 1))
    per = {}
    for cid, name in zip(ids, names):
        row = confusion.get(str(cid), {})
        n, c = sum(row.values()), row.get(str(cid), 0)
        per[str(cid)] = {"name": name, "evaluated": n, "top1": c / n if n else None, "top5": None,
                         "top1_correct": c, "top5_correct": 0}
    evaluated = sum(c["evaluated"] for c in per.values())
    correct = sum(c["top1_correct"] for c in per.values())
    return {"top1": correct / evaluated if evaluated else None, "top5": None, "evaluated": evaluated,
            "complete": True, "per_category": per, "confusion": confusion}


# 猫 is mistaken for dog twice; dog for 猫 four times and for cow once; bird for fish (never annotated) once.
KNOWN = boxclass_report(["猫", "dog", "cow", "bird", "fish"], {
    "1": {"1": 8, "2": 2},
    "2": {"2": 5, "1": 4, "3": 1},
    "3": {"3": 10},
    "4": {"4": 3, "5": 1},
})


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()  # a truncated file fails here
        return image.size


# ------------------------------------------------------------------------------------------ the matrix
def test_the_most_confused_categories_are_chosen_by_off_diagonal_mass():
    confusion = confusion_of(KNOWN)
    assert confusion.names == ["猫", "dog", "cow", "bird", "fish"]
    assert confusion.counts[:, :5].tolist() == [[8, 2, 0, 0, 0], [4, 5, 1, 0, 0], [0, 0, 10, 0, 0], [0, 0, 0, 3, 1],
                                                [0, 0, 0, 0, 0]]
    # Mass (mistaken + mistaken for): dog 5 + 2, 猫 2 + 4, then cow, bird and fish 1 each, the larger first; fish
    # has no annotations but was predicted, so it is still a candidate.
    assert most_confused(confusion.counts, 5) == [1, 0, 2, 3, 4]
    assert most_confused(confusion.counts, 3) == [1, 0, 2]


def test_shown_rows_are_normalised_with_the_rest_in_other():
    shown = shown_matrix(confusion_of(KNOWN), top=3)
    assert shown.order == [1, 0, 2] and shown.total == 5 and shown.support.tolist() == [10, 10, 10]
    # Columns: dog, 猫, cow, (other).
    assert np.allclose(shown.rows, [[0.5, 0.4, 0.1, 0.0], [0.2, 0.8, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    two = shown_matrix(confusion_of(KNOWN), top=2)
    assert np.allclose(two.rows, [[0.5, 0.4, 0.1], [0.2, 0.8, 0.0]])  # dog -> cow is "other" now
    # A category never annotated has an empty row (no division by zero).
    full = shown_matrix(confusion_of(KNOWN), top=5)
    assert full.rows[4].tolist() == [0.0] * 6 and np.allclose(full.rows[3], [0, 0, 0, 0.75, 0.25, 0])


def test_segmentation_matrix_from_the_evaluation(tmp_path):
    root = write_folder_dataset(tmp_path)
    dataset = FolderDataset(root / "images", root / "labels", root / "classes.txt")
    # Cat and dog swapped: 7 cat pixels called dog, 6 dog pixels called cat; background right.
    swap = np.array([0, 2, 1])
    report = json.loads(json.dumps(evaluate(lambda im: swap[colour_reader(im)], dataset)))
    confusion = confusion_of(report)
    assert confusion.kind == "segmentation" and confusion.names == ["background", "cat", "dog"]
    shown = shown_matrix(confusion)
    assert shown.order == [1, 2, 0]  # cat and dog tie on mass 13; cat has more pixels
    assert shown.rows.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]]
    # Nothing predicted: every pixel went to "no class", which the (other) column holds.
    report = evaluate(lambda im: np.full((im.height, im.width), 3), dataset)
    shown = shown_matrix(confusion_of(report))
    assert shown.order == [0, 1, 2] and shown.rows[:, 3].tolist() == [1, 1, 1]


def test_bars_are_the_lowest_scores():
    worst = worst_scores(confusion_of(KNOWN))
    assert worst == [(1, 0.5), (3, 0.75), (0, 0.8), (2, 1.0)]  # fish was never scored
    assert worst_scores(confusion_of(KNOWN), bars=2) == [(1, 0.5), (3, 0.75)]


def test_a_report_without_confusion_counts_is_one_clear_error():
    old = {k: v for k, v in KNOWN.items() if k != "confusion"}
    with pytest.raises(FGDenseError, match="no confusion counts"):
        plot_png(old)


# ------------------------------------------------------------------------------------------ the picture
def test_the_picture_is_a_png_of_reasonable_size():
    width, height = png_size(plot_png(KNOWN))
    assert 1000 <= width <= 2000 and 300 <= height <= 1500


def test_a_character_no_font_has_warns_once_and_draws():
    report = boxclass_report(["猫", "𠀀 rare"], {"1": {"2": 3}, "2": {"2": 1}})
    with pytest.warns(UserWarning, match="no font here draws") as caught:
        png_size(plot_png(report))
    assert len([w for w in caught if "no font" in str(w.message)]) == 1


def test_one_category_many_categories_and_nothing_scored():
    one = boxclass_report(["猫"], {"1": {"1": 3}})
    png_size(plot_png(one))
    assert shown_matrix(confusion_of(one)).rows.tolist() == [[1.0, 0.0]]

    rng = np.random.default_rng(0)
    k = 400
    counts = np.zeros((k, k + 1), np.int64)
    counts[np.arange(k), np.arange(k)] = rng.integers(0, 500, k)
    counts[rng.integers(0, k, 900), rng.integers(0, k + 1, 900)] += rng.integers(1, 200, 900)
    report = scores_from_confusion(counts, [f"类别 {i}" for i in range(k)])
    report.update(confusion=sparse_confusion(counts, [str(i) for i in range(k + 1)]), images=3, complete=False)
    shown = shown_matrix(confusion_of(report))
    assert len(shown.order) == 15 and shown.total == k and np.allclose(shown.rows.sum(1), 1)
    assert len(worst_scores(confusion_of(report))) == 30
    width, height = png_size(plot_png(report))
    assert height <= 1500  # the top 15 and the 30 lowest, not 400 rows

    empty = boxclass_report(["猫", "dog"], {})
    assert shown_matrix(confusion_of(empty)).order == [] and worst_scores(confusion_of(empty)) == []
    png_size(plot_png(empty))


# ------------------------------------------------------------------------------------------ the tool
def run_seg_tool(*argv, cwd=ROOT):
    return subprocess.run([sys.executable, str(SEG_TOOL), *argv], capture_output=True, text=True, timeout=180, cwd=cwd)


def test_segmentation_tool_writes_the_plot_beside_the_report(tmp_path, tiny_checkpoint):
    root = write_folder_dataset(tmp_path / "d", classes=["background", "猫", "狗"])
    out = tmp_path / "out"
    done = run_seg_tool("--images", str(root / "images"), "--masks", str(root / "labels"), "--classes",
                        str(root / "classes.txt"), "--model", str(tiny_checkpoint), "--background-class", "background",
                        "--max-patches", "16", "--out", str(out), "--plot", "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"plot written to {out / 'plot.png'}" in done.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert sum(sum(row.values()) for row in report["confusion"].values()) == report["scored_pixels"] == 21
    width, height = png_size((out / "plot.png").read_bytes())
    assert width >= 1000 and height >= 300
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["plot.png", "records", "report.json"]


def run_seg_tool_here(capsys, *argv) -> tuple[int, list[str]]:
    """The tool in this process (no second torch import): its exit code and its stderr lines."""
    code = load_tool().main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_segmentation_tool_never_plots_over_an_input(tmp_path, monkeypatch, capsys):
    root = write_folder_dataset(tmp_path)
    shutil.copy(root / "classes.txt", root / "plot.png")  # the class list, named as the plot would be
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, err = run_seg_tool_here(capsys, "--images", "images", "--masks", "labels", "--classes", "plot.png",
                                  "--out", ".", "--plot", "--model", "never-loaded")
    assert code != 0 and len(err) == 1 and "is the class list" in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (root / "plot.png").read_text(encoding="utf-8") == (root / "classes.txt").read_text(encoding="utf-8")

    (tmp_path / "out" / "plot.png").mkdir(parents=True)  # a folder where the plot would go
    code, err = run_seg_tool_here(capsys, "--images", "images", "--masks", "labels", "--classes", "classes.txt",
                                  "--out", "out", "--plot", "--model", "never-loaded")
    assert code != 0 and len(err) == 1 and "plot.png is a folder" in err[0], err
    code, err = run_seg_tool_here(capsys, "--images", "images", "--masks", "labels", "--classes", "classes.txt",
                                  "--plot", "--font", "nope.otf", "--model", "never-loaded")
    assert code != 0 and len(err) == 1 and "font nope.otf does not exist" in err[0], err


def test_segmentation_tool_plot_into_a_read_only_folder_is_one_line(tmp_path, monkeypatch, capsys, read_only):
    write_folder_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    read_only(out)
    code, err = run_seg_tool_here(capsys, "--images", "images", "--masks", "labels", "--classes", "classes.txt",
                                  "--out", "out", "--plot", "--model", "never-loaded")
    assert code != 0 and len(err) == 1 and "cannot write" in err[0], err
    assert not any(out.iterdir())


def test_counts_in_the_labels_are_shortened_without_changing_their_size():
    from fgdense.evaluation.plots import _count

    assert [_count(v) for v in (7, 9999, 10000, 87473, 771758, 2_500_000)] == ["7", "9999", "10k", "87.5k", "772k",
                                                                               "2.5M"]


def test_names_are_drawn_as_plain_text_not_mathtext():
    """matplotlib parses "$...$" as mathtext and fails on an unknown command: a name is drawn as written."""
    report = boxclass_report([r"$\nosuchcommand$", "$5 and $6", "dog"], {"1": {"2": 3}, "2": {"3": 1}, "3": {"3": 2}})
    report["model"] = r"$\alpha$ model"
    png_size(plot_png(report))


def test_terminal_controls_in_names_are_printed_escaped(capsys, tmp_path):
    """ESC and BEL in category names from a user's file never reach the terminal raw, in any table or line."""
    from fgdense.cli import one_line
    from fgdense.evaluation.boxclass_report import format_report as format_boxclass
    from fgdense.evaluation.report import write_report
    from fgdense.evaluation.segmentation import format_report as format_segmentation

    names = ["cat\x1b[2J", "dog\x07", "cow"]
    report = boxclass_report(names, {"1": {"1": 2}, "2": {"1": 1}, "3": {"3": 1}})
    report.update(annotations="4", skipped={}, skipped_total=0, images=1, images_done=1,
                  annotations_file="ann\x1b]0;title\x07.json")
    seg = scores_from_confusion(np.array([[3, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0]]), names)
    seg.update(images=1)
    for table in (format_boxclass(report), format_segmentation(seg)):
        assert "\x1b" not in table and "\x07" not in table
        assert "cat\\x1b[2J" in table and "dog\\x07" in table
    rows = [line for line in format_segmentation(seg).splitlines() if line.startswith(("cat", "dog", "cow"))]
    assert len(rows) == 3 and len({len(line) for line in rows}) == 1  # the columns line up, escapes measured
    write_report(report, tmp_path / "report.json", None, format_boxclass(report) + "\nlast\x1b line")
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed and "last\\x1b line" in printed
    assert one_line("no category named 'a\x1bb'\x07") == "no category named 'a\\x1bb'\\x07"


def test_a_hundred_thousand_categories_are_counted_and_drawn_in_memory_that_follows_the_boxes():
    """The top-1 confusion is kept sparse: 100k categories (a dense matrix would be 80 GB) cost what the
    boxes scored cost, in the tally, the report and the picture."""
    import resource
    from collections import Counter

    from fgdense.evaluation.boxclass_data import BoxClassDataset
    from fgdense.evaluation.boxclass_report import Tally, build_report

    k = 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dataset = BoxClassDataset([(i, f"类别 {i}") for i in range(k)], [], Counter(), 4)
    tally = Tally(dataset.categories)
    tally.add_image([{"category_id": 5, "top5": [5, 1, 2, 3, 4]}, {"category_id": 5, "top5": [99_999, 5, 1, 2, 3]},
                     {"category_id": 70_000, "top5": [5, 1, 2, 3, 4]}, {"skipped": "degenerate_box"}])
    report = build_report(dataset, tally, {})
    assert report["confusion"] == {"5": {"5": 1, "99999": 1}, "70000": {"5": 1}}
    assert report["top1_correct"] == 1 and report["evaluated"] == 3 and report["skipped"]["degenerate_box"] == 1
    confusion = confusion_of(report)
    assert most_confused(confusion.cells, 3, k) == [5, 70_000, 99_999]
    shown = shown_matrix(confusion)
    assert shown.order == [5, 70_000, 99_999] and shown.rows[:, :3].tolist() == [[0.5, 0, 0.5], [1, 0, 0], [0, 0, 0]]
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # kilobytes on Linux
    assert grown < 500, f"{grown:.0f} MB for 100k categories and 3 boxes"


def test_a_sheet_names_its_path_printably(tmp_path, capsys):
    """The picture's line printed the output folder as given: an ESC in --out reached the terminal (the
    report's line beside it was escaped)."""
    from fgdense.eval_tools import write_sheet

    folder = tmp_path / "o\x1b[31mred"
    folder.mkdir()
    write_sheet(folder / "plot.png", lambda: Image.new("RGB", (4, 4)))
    said = capsys.readouterr().out
    assert "\x1b" not in said and "\\x1b[31mred" in said and (folder / "plot.png").is_file()
