"""Zero-shot classification: per-image top-5 and top-1/top-5 equal to the official eval_IN1K.py formulation
(benchmarks/reference.py), exactly; ImageFolder's class order and ImageNet-v2's numbered folders; the
per-class numbers and confusion counts recounted from predictions.jsonl; the tool and its --plot."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.reference import official_zeroshot
from conftest import CHECKPOINT
from fgdense import Embedder, FGCLIP2ImageProcessor, FGCLIP2Model, load_tokenizer
from fgdense.errors import DatasetError
from fgdense.evaluation.plots import confusion_of
from fgdense.evaluation.zeroshot import evaluate_zeroshot, imagenet_classnames
from fgdense.prompts import imagenet_templates

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["Goldfish", "great white shark", "金毛犬", "Red Fox", "tabby cat", "space shuttle", "Pizza"]
TEMPLATES = ["a photo of a {}.", "a Bad photo of the {}.", "{}", "一张{}的照片"]


@pytest.fixture(scope="module")
def parts():
    return (FGCLIP2Model.from_pretrained(CHECKPOINT), FGCLIP2ImageProcessor.from_pretrained(CHECKPOINT),
            load_tokenizer(CHECKPOINT))


def make_folders(root: Path, folders: list[str], labels: list[int], seed: int = 0) -> list[tuple[Path, int]]:
    """Two or three images per class folder; (path, class index) in ImageFolder's order."""
    rng = np.random.default_rng(seed)
    samples = []
    for folder, label in sorted(zip(folders, labels)):
        (root / folder).mkdir(parents=True)
        for k in range(2 + label % 2):
            h, w = rng.integers(20, 90, 2)
            path = root / folder / f"img_{k}.jpg"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)
            samples.append((path, label))
    return samples


def recount(rows: list[dict], names: list[str]) -> tuple[dict, dict]:
    """per_category and confusion counted here from the per-image rows, independently of the package."""
    per, confusion = {}, {}
    for index, name in enumerate(names):
        mine = [r["top5"] for r in rows if r["label"] == index and "top5" in r]
        per[str(index)] = {"name": name, "images": len(mine),
                           "top1": sum(top[0] == index for top in mine) / len(mine) if mine else None,
                           "top5": sum(index in top for top in mine) / len(mine) if mine else None}
        for top in mine:
            cell = confusion.setdefault(str(index), {})
            cell[str(top[0])] = cell.get(str(top[0]), 0) + 1
    return per, confusion


def check_breakdown(report: dict, rows: list[dict], names: list[str]) -> None:
    """The per-class numbers and confusion counts equal those recounted from predictions.jsonl, and add up
    to the headline numbers."""
    per, confusion = recount(rows, names)
    assert report["per_category"] == per
    assert report["confusion"] == confusion
    scored = [c for c in report["per_category"].values() if c["images"]]
    assert sum(c["images"] for c in scored) == report["images"]
    assert sum(n for row in report["confusion"].values() for n in row.values()) == report["images"]
    assert sum(c["top1"] * c["images"] for c in scored) / report["images"] == pytest.approx(report["top1"], abs=1e-12)
    assert sum(c["top5"] * c["images"] for c in scored) / report["images"] == pytest.approx(report["top5"], abs=1e-12)
    assert all(n > 0 for row in report["confusion"].values() for n in row.values())  # sparse: no zero cells


@pytest.mark.parametrize("layout", ["synsets", "numbered"])
def test_top1_top5_and_every_image_equal_the_official_protocol(tmp_path, parts, layout):
    model, processor, tokenizer = parts
    if layout == "synsets":  # class index = place among the sorted folder names
        folders = ["n0300", "n0100", "n0500", "n0200", "n0400", "n0600", "n0700"]
        labels = [sorted(folders).index(f) for f in folders]
    else:  # ImageNet-v2: the folder's number is the class ("10" sorts before "2")
        folders, labels = ["0", "1", "2", "3", "4", "5", "6"], list(range(7))
    samples = make_folders(tmp_path / "val", folders, labels)
    report = evaluate_zeroshot(Embedder(*parts, precision="fp32", max_num_patches=1024), tmp_path / "val", NAMES,
                               TEMPLATES, out=tmp_path / "out", progress=False)
    expected = official_zeroshot(model, processor, tokenizer, samples, NAMES, TEMPLATES)
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [label for _, label in samples]
    assert [r["top5"] for r in rows] == expected["tops"]
    assert (report["top1"], report["top5"]) == (expected["top1"], expected["top5"])
    assert report["images"] == len(samples) and report["classes"] == 7 and report["templates"] == 4
    check_breakdown(report, rows, NAMES)


def test_a_class_without_images_has_no_accuracy_and_no_confusion_row(tmp_path, parts):
    names = [f"class {i}" for i in range(6)]
    make_folders(tmp_path / "v2", ["0", "3", "4"], [0, 3, 4])  # classes 1, 2 and 5 have no images
    out = tmp_path / "out"
    report = evaluate_zeroshot(Embedder(*parts, max_num_patches=64), tmp_path / "v2", names, ["{}"], out=out,
                               progress=False)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    check_breakdown(report, rows, names)
    assert report["per_category"]["1"] == {"name": "class 1", "images": 0, "top1": None, "top5": None}
    assert set(report["confusion"]) == {"0", "3", "4"}
    assert [report["per_category"][k]["images"] for k in ("0", "3", "4")] == [2, 3, 2]


def test_numbered_folders_map_by_number_not_by_sort_order(tmp_path, parts):
    names = [f"class {i}" for i in range(12)]
    make_folders(tmp_path / "v2", ["2", "10"], [2, 10])
    out = tmp_path / "out"
    evaluate_zeroshot(Embedder(*parts, max_num_patches=64), tmp_path / "v2", names, ["{}"], out=out, progress=False)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert {(r["image"].split("/")[0], r["label"]) for r in rows} == {("10", 10), ("2", 2)}
    with pytest.raises(DatasetError, match="only 5 class names"):
        evaluate_zeroshot(Embedder(*parts), tmp_path / "v2", names[:5], ["{}"], progress=False)


def test_imagenet_names_and_templates_are_shipped():
    names = imagenet_classnames()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet paper"
    assert len(imagenet_templates()) == 80


def test_the_tool_writes_the_report(tmp_path):
    make_folders(tmp_path / "val", ["a", "b", "c"], [0, 1, 2])
    names = tmp_path / "names.txt"
    names.write_text("Red Fox\n金毛犬\ntabby cat\n", encoding="utf-8")
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "tools" / "eval_zeroshot.py"), "--images", str(tmp_path / "val"),
               "--classnames", str(names), "--model", str(CHECKPOINT), "--out", str(out), "--device", "cpu",
               "--quiet", "--workers", "0", "--max-patches", "64"]
    done = subprocess.run(command + ["--plot"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 7 and report["classes"] == 3 and report["templates"] == 80
    assert 0 <= report["top1"] <= report["top5"] == 1.0  # three classes: always within the best five
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    check_breakdown(report, rows, ["Red Fox", "金毛犬", "tabby cat"])
    confusion = confusion_of(report)  # the picture reads the JSON report as a zero-shot one
    assert (confusion.kind, confusion.unit, confusion.noun) == ("zero-shot classification", "images",
                                                                 ("class", "classes"))
    assert "on 7 images" in confusion.summary and confusion.names == ["Red Fox", "金毛犬", "tabby cat"]
    assert f"plot written to {out / 'plot.png'}" in done.stdout.splitlines()
    with Image.open(io.BytesIO((out / "plot.png").read_bytes())) as picture:
        assert picture.format == "PNG"
        picture.load()  # a truncated file fails here
        assert picture.size[0] > 1000
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = subprocess.run(command[:2] + ["--images", str(empty), "--out", str(tmp_path / "o2"), "--model",
                                           str(CHECKPOINT), "--device", "cpu"], capture_output=True, text=True,
                            timeout=300)
    assert failed.returncode == 1 and "no class folders" in failed.stderr and failed.stderr.count("\n") == 1


def test_the_tool_refuses_an_output_folder_inside_the_images(tmp_path):
    """Every file in a class folder is one of its images: --out a class folder made the next run score its
    own plot.png as an image of that class (and write the picture over it); --out the images folder made
    records/ a class. One line, before the model loads."""
    make_folders(tmp_path / "val", ["a", "b"], [0, 1])
    (tmp_path / "names.txt").write_text("a\nb\n", encoding="utf-8")
    for out in (tmp_path / "val", tmp_path / "val" / "a", tmp_path / "val" / "a" / "new"):
        done = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_zeroshot.py"), "--images",
                               str(tmp_path / "val"), "--classnames", str(tmp_path / "names.txt"), "--out",
                               str(out), "--plot", "--model", str(tmp_path / "never-loaded")],
                              capture_output=True, text=True, timeout=300)
        err = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(err) == 1 and "inside the images folder" in err[0], err
    assert sorted(p.name for p in (tmp_path / "val" / "a").iterdir()) == ["img_0.jpg", "img_1.jpg"]
    assert not (tmp_path / "val" / "a" / "new").exists()
