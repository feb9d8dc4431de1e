"""Box-classification evaluation: equal to the official per-annotation protocol, sharded, resumable."""

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import CHECKPOINT
from fgdense import BoxError, encode_text
from fgdense.evaluation import evaluate_box_classification, load_boxclass_dataset
from fgdense.evaluation.boxclass import DatasetError

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "eval_boxclass.py"
# Non-contiguous ids, Chinese and English names, an LVIS-style underscore and capitals (prompts are lower-cased).
CATEGORIES = [(3, "猫"), (7, "dog"), (12, "red mug"), (40, "Traffic_Light"), (41, "电脑"), (100, "自行车"),
              (230, "bicycle")]


def make_dataset(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Generated images with coloured rectangles and their boxes, plus the awkward cases.

    One image file is missing (2 annotations), one box has zero area, one image is listed by LVIS's
    ``coco_url`` only, one image has no annotations, one annotation names an unknown category.
    """
    rng = np.random.default_rng(seed)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    sizes = [(48, 64), (120, 200), (300, 90), (96, 96), (150, 220)]
    images, annotations = [], []
    for index, (h, w) in enumerate(sizes):
        pixels = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        image_id = 1000 + 7 * index
        for _ in range(3):
            bw, bh = rng.integers(8, w // 2), rng.integers(8, h // 2)
            x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
            pixels[y : y + bh, x : x + bw] = rng.integers(0, 256, 3)
            category = CATEGORIES[rng.integers(len(CATEGORIES))][0]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(category),
                                "bbox": [float(x), float(y), float(bw), float(bh)]})
        name = f"img_{index}.png"
        Image.fromarray(pixels).save(images_dir / name)
        entry = {"id": image_id, "height": h, "width": w}
        if index == 2:
            entry["coco_url"] = f"http://images.cocodataset.org/val2017/{name}"
        else:
            entry["file_name"] = name
        images.append(entry)
    # A box partly outside its image is clipped, not skipped.
    annotations.append({"id": 900, "image_id": 1000, "category_id": 41, "bbox": [50.0, 30.0, 40.0, 40.0]})
    annotations.append({"id": 901, "image_id": 1007, "category_id": 7, "bbox": [10.0, 10.0, 0.0, 20.0]})  # zero area
    images.append({"id": 5, "file_name": "not_there.png", "height": 50, "width": 50})
    annotations += [{"id": 902, "image_id": 5, "category_id": 3, "bbox": [1.0, 1.0, 20.0, 20.0]},
                    {"id": 903, "image_id": 5, "category_id": 12, "bbox": [5.0, 5.0, 20.0, 20.0]}]
    images.append({"id": 6, "file_name": "img_0.png", "height": 48, "width": 64})  # no annotations
    annotations.append({"id": 904, "image_id": 1000, "category_id": 999, "bbox": [1.0, 1.0, 9.0, 9.0]})
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": cid, "name": name} for cid, name in CATEGORIES]}
    ann = folder / "ann.json"
    ann.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return ann, images_dir


def official_protocol(model, processor, tokenizer, ann: Path, images_dir: Path):
    """The straightforward implementation: re-encode the image for every annotation, one box at a time."""
    data = json.loads(ann.read_text(encoding="utf-8"))
    ids = [c["id"] for c in data["categories"]]
    text = encode_text(model, tokenizer, [c["name"].replace("_", " ") for c in data["categories"]], walk_type="box")
    files = {im["id"]: im.get("file_name") or im["coco_url"].split("/")[-1] for im in data["images"]}
    predictions, skipped = {}, Counter()
    for a in data["annotations"]:
        if a["category_id"] not in ids:
            skipped["unknown_category"] += 1
            continue
        path = images_dir / files[a["image_id"]]
        if not path.exists():
            skipped["missing_image"] += 1
            continue
        image = Image.open(path).convert("RGB")
        x, y, w, h = a["bbox"]
        inputs = processor(image)
        try:
            with torch.no_grad():
                region = model.get_image_region_features(**inputs, image_sizes=[(image.height, image.width)],
                                                         region_infos=[[[x, y, x + w, y + h]]])[0]
        except BoxError:
            skipped["degenerate_box"] += 1
            continue
        scores, top = (F.normalize(region, dim=-1) @ text.T)[0].topk(5)
        predictions[a["id"]] = ([ids[i] for i in top.tolist()], scores.tolist(), a["category_id"])
    n = len(predictions)
    top1 = 100 * sum(p[0] == c for p, _, c in predictions.values()) / n
    top5 = 100 * sum(c in p for p, _, c in predictions.values()) / n
    return top1, top5, predictions, skipped


def load_tool():
    spec = importlib.util.spec_from_file_location("eval_boxclass_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_predictions(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("boxclass"))


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    """The tool, single process: report and predictions files."""
    ann, images_dir = dataset
    out = tmp_path_factory.mktemp("full")
    code = load_tool().main(["--ann", str(ann), "--images", str(images_dir), "--model", str(CHECKPOINT),
                             "--out", str(out / "report.json"), "--predictions", str(out / "preds.jsonl"),
                             "--workers", "1", "--batch-size", "2", "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return report, out / "preds.jsonl"


def test_equals_official_per_annotation_protocol(dataset, full_run, ref_model, ref_processor, ref_tokenizer):
    ann, images_dir = dataset
    report, preds_path = full_run
    top1, top5, reference, ref_skipped = official_protocol(ref_model, ref_processor, ref_tokenizer, ann, images_dir)
    assert report["evaluated"] == len(reference) == 16
    assert report["top1"] == pytest.approx(top1, abs=1e-9)
    assert report["top5"] == pytest.approx(top5, abs=1e-9)
    assert 0 < report["top5"] and report["top1"] < 100  # a random model: the numbers say something
    # Every skip is reported, by reason.
    assert report["skipped"] == {"missing_image": 2, "unreadable_image": 0, "degenerate_box": 1,
                                 "unknown_image_id": 0, "unknown_category": 1}
    assert {k: v for k, v in report["skipped"].items() if v} == dict(ref_skipped)
    assert report["annotations"] == report["evaluated"] + report["skipped_total"] == 20
    assert report["complete"] and report["images"] == report["images_done"] == 6
    # Each annotation: same top-5 categories (ids, not positions) and the same cosine scores.
    header, records = read_predictions(preds_path)
    assert header["fgdense_boxclass_predictions"]["model"] == str(CHECKPOINT.resolve())
    scored = {r["annotation_id"]: r for r in records if "skipped" not in r}
    assert scored.keys() == reference.keys()
    for aid, (ids, scores, _) in reference.items():
        assert scored[aid]["top5"] == ids, aid
        assert np.allclose(scored[aid]["scores"], scores, atol=1e-5), aid
    skipped = {r["annotation_id"]: r["skipped"] for r in records if "skipped" in r}
    assert skipped == {901: "degenerate_box", 902: "missing_image", 903: "missing_image"}
    # Per-category accuracy adds up, keyed by the real (non-contiguous) ids.
    per = report["per_category"]
    assert set(per) == {str(c) for c, _ in CATEGORIES}
    assert per["40"]["name"] == "Traffic Light"  # underscore -> space; lower-casing happens at tokenisation
    assert sum(c["evaluated"] for c in per.values()) == report["evaluated"]
    assert sum(c["top1_correct"] for c in per.values()) == report["top1_correct"]
    for cid, c in per.items():
        mine = [(ids, cat) for ids, _, cat in reference.values() if cat == int(cid)]
        assert c["evaluated"] == len(mine)
        assert c["top5_correct"] == sum(cat in ids for ids, cat in mine)


def test_dataset_reading(dataset):
    ann, _ = dataset
    data = load_boxclass_dataset(ann)
    assert [cid for cid, _ in data.categories] == [c for c, _ in CATEGORIES]
    assert dict(data.categories)[40] == "Traffic Light"  # lower-casing is the tokenizer step's job
    assert [im.file_name for im in data.images][2] == "img_2.png"  # from coco_url
    assert len(data.images) == 6 and all(im.annotations for im in data.images)
    first = data.images[0].annotations[0]
    raw = json.loads(ann.read_text(encoding="utf-8"))["annotations"][0]["bbox"]
    assert first.bbox == (raw[0], raw[1], raw[0] + raw[2], raw[1] + raw[3])


def test_two_process_torchrun_equals_single_process(dataset, full_run, tmp_path):
    ann, images_dir = dataset
    report, preds_path = full_run
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(TOOL), "--ann", str(ann), "--images", str(images_dir), "--model", str(CHECKPOINT),
               "--out", str(tmp_path / "report.json"), "--predictions", str(tmp_path / "preds.jsonl"),
               "--workers", "0", "--batch-size", "2", "--quiet"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8")) == report
    _, single = read_predictions(preds_path)
    _, sharded = read_predictions(tmp_path / "preds.jsonl")
    assert [(r["annotation_id"], r.get("top5"), r.get("skipped")) for r in sharded] == \
           [(r["annotation_id"], r.get("top5"), r.get("skipped")) for r in single]
    assert not list(tmp_path.glob("*.part"))


def test_resume_after_max_images_and_after_a_hard_stop(dataset, full_run, ref_model, tmp_path):
    ann, images_dir = dataset
    report, preds_path = full_run
    preds = tmp_path / "preds.jsonl"
    partial = evaluate_box_classification(ref_model, ann, images_dir, predictions=preds, max_images=2, progress=False)
    assert not partial["complete"] and partial["images_done"] == 2
    resumed = evaluate_box_classification(ref_model, ann, images_dir, predictions=preds, resume=True, progress=False)
    assert resumed == report

    # A hard stop: the main file holds image 0, a rank's part file image 1 and half of image 2's first line.
    header, records = read_predictions(preds_path)
    by_image = {}
    for r in records:
        by_image.setdefault(r["image_id"], []).append(json.dumps(r, ensure_ascii=False) + "\n")
    first, second, third = list(by_image.values())[:3]
    head = json.dumps(header) + "\n"
    preds.write_text(head + "".join(first), encoding="utf-8")
    part = tmp_path / "preds.jsonl.rank1.part"
    part.write_text(head + "".join(second) + third[0][:25], encoding="utf-8")
    resumed = evaluate_box_classification(ref_model, ann, images_dir, predictions=preds, resume=True, progress=False)
    assert resumed == report
    assert not part.exists()
    assert [r["annotation_id"] for r in read_predictions(preds)[1]] == [r["annotation_id"] for r in records]


def test_a_new_run_starts_its_predictions_file_over_at_once(dataset, full_run, ref_model, tmp_path, monkeypatch):
    """An older complete file must not leak into a later interrupted run's --resume."""
    from fgdense.evaluation import boxclass

    ann, images_dir = dataset
    _, preds_path = full_run
    preds = tmp_path / "preds.jsonl"
    preds.write_text(preds_path.read_text(encoding="utf-8"), encoding="utf-8")  # an older, complete run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(boxclass, "dense_grids", interrupted)  # the new run stops at its first image
    with pytest.raises(KeyboardInterrupt):
        evaluate_box_classification(ref_model, ann, images_dir, predictions=preds, progress=False)
    assert read_predictions(preds)[1] == []  # the older run's lines are gone, not waiting to be resumed


def test_resume_refuses_another_models_predictions(dataset, full_run, tiny_checkpoint, tmp_path):
    from fgdense import FGCLIP2Model

    ann, images_dir = dataset
    _, preds_path = full_run
    preds = tmp_path / "preds.jsonl"
    preds.write_text(preds_path.read_text(encoding="utf-8"), encoding="utf-8")
    other = FGCLIP2Model.from_pretrained(tiny_checkpoint)
    with pytest.raises(DatasetError, match="written for"):
        evaluate_box_classification(other, ann, images_dir, predictions=preds, resume=True, progress=False)


def test_unreadable_image_is_counted(tmp_path, ref_model):
    ann, images_dir = make_dataset(tmp_path, seed=1)
    (images_dir / "img_3.png").write_bytes(b"not a png")
    report = evaluate_box_classification(ref_model, ann, images_dir, progress=False)
    assert report["skipped"]["unreadable_image"] == 3  # img_3 had three boxes
    assert report["annotations"] == report["evaluated"] + report["skipped_total"]


def test_tool_user_errors_are_one_line_and_write_nothing(dataset, tmp_path, capsys):
    ann, images_dir = dataset
    tool = load_tool()
    out = tmp_path / "report.json"
    cases = [
        (["--ann", str(tmp_path / "nope.json"), "--images", str(images_dir)], "does not exist"),
        (["--ann", str(ann), "--images", str(tmp_path / "nope")], "does not exist"),
        (["--ann", str(ann), "--images", str(images_dir), "--resume"], "--resume needs --predictions"),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}', encoding="utf-8")
    cases.append((["--ann", str(bad), "--images", str(images_dir)], "lacks COCO-format"))
    for args, message in cases:
        code = tool.main(args + ["--model", str(CHECKPOINT), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code != 0 and message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
