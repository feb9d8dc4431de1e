"""The shapes world: what it writes, and that its formats agree with one another."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _train_helpers import REPO, make_world
from fgdense.train.shapes_world import HELD_OUT, WorldSpec


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), num_train=16, num_val=12, seed=7)


def load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def test_splits_categories_and_held_out_combinations(world):
    train, val, novel = load(world["train_ann"]), load(world["val_ann"]), load(world["val_novel_ann"])
    names = {c["id"]: c["name"] for c in novel["categories"]}
    held = {f"{c} {s}" for c, s in HELD_OUT}
    assert len(names) == world["categories"] == 16 and held <= set(names.values())
    assert {c["name"] for c in train["categories"]} == {c["name"] for c in val["categories"]} == set(names.values()) - held
    assert not {i["file_name"] for i in train["images"]} & {i["file_name"] for i in val["images"]}
    assert all(names[a["category_id"]] not in held for a in train["annotations"] + val["annotations"])
    assert novel["annotations"] and all(names[a["category_id"]] in held for a in novel["annotations"])
    # Every colour and every shape is trained on (in other combinations).
    trained = [n.split() for n in set(names.values()) - held]
    assert {c for c, _ in trained} == set(WorldSpec().colours) and {s for _, s in trained} == set(WorldSpec().shapes)
    for ann in train["annotations"]:
        attributes = ann["attributes"]
        assert names[ann["category_id"]] == f"{attributes['colour']} {attributes['shape']}"
        assert attributes["texture"] in WorldSpec().textures and attributes["size"] in WorldSpec().sizes


def test_names_file_and_class_list(world):
    names = load(world["names_file"])
    classes = Path(world["classes"]).read_text(encoding="utf-8").splitlines()
    assert classes[0] == "background" and len(classes) == 17
    for entry in names:
        assert classes[entry["id"]] == entry["name"] and entry["name_zh"] and entry["synonyms"]
        assert entry["held_out"] == (tuple(entry["name"].split()) in HELD_OUT)
    assert {e["name_zh"] for e in names} >= {"红色圆形", "蓝色方块"}


def test_label_pngs_agree_with_the_coco_masks(world):
    from pycocotools import mask as mask_utils

    for split in ("train", "val"):
        data = load(world[f"{split}_ann"])
        novel = load(world["val_novel_ann"])["annotations"] if split == "val" else []
        for image in data["images"][:6]:
            labels = np.asarray(Image.open(Path(world[f"{split}_masks"], Path(image["file_name"]).stem + ".png")))
            assert labels.shape == (image["height"], image["width"])
            anns = [a for a in data["annotations"] + novel if a["image_id"] == image["id"]]
            drawn = np.zeros_like(labels)
            for ann in anns:
                rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"]))
                inside = mask_utils.decode(rle).astype(bool)
                # The object's pixels carry its category id in the label PNG (edges may differ by a pixel).
                assert (labels[inside] == ann["category_id"]).mean() > 0.85
                drawn[inside] = ann["category_id"]
                # ... and the box frames the mask.
                x, y, w, h = ann["bbox"]
                ys, xs = np.nonzero(inside)
                assert xs.min() >= x - 1 and xs.max() <= x + w and ys.min() >= y - 1 and ys.max() <= y + h
            assert ((labels > 0) == (drawn > 0)).mean() > 0.97  # background is 0 wherever no object is


def test_finehard_records_name_the_same_objects(world):
    train = load(world["train_ann"])
    names = {c["id"]: c["name"] for c in train["categories"]}
    english = [json.loads(line) for line in Path(world["finehard"]["ann_file"], "en.jsonl").read_text().splitlines()]
    chinese = load(Path(world["finehard"]["ann_file"], "cn.json"))
    by_file = {i["file_name"]: i for i in train["images"]}
    for en, cn in zip(english, chinese):
        assert en["f_path"] == cn["f_path"] and cn["is_cn"] and not en["is_cn"]
        image = by_file[en["f_path"]]
        anns = [a for a in train["annotations"] if a["image_id"] == image["id"]]
        assert [b["short_expr"] for b in en["bbox_info"]] == [names[a["category_id"]] for a in anns]
        for box, ann in zip(en["bbox_info"], anns):
            x, y, w, h = ann["bbox"]
            np.testing.assert_allclose(box["bbox"], [x / image["width"], y / image["height"], (x + w) / image["width"],
                                                      (y + h) / image["height"]], rtol=1e-6)
            assert box["short_expr"] not in box["short_expr_negs"] and len(box["short_expr_negs"]) == 10
            assert box["long_expr"].endswith(box["short_expr"])


def test_tool_writes_a_world_and_refuses_bad_sizes(tmp_path, capsys):
    main = runpy.run_path(str(REPO / "tools" / "make_shapes_world.py"))["main"]
    assert main([str(tmp_path / "w"), "--train", "3", "--val", "2", "--no-textures"]) == 0
    data = load(tmp_path / "w" / "train" / "instances.json")
    assert len(data["images"]) == 3 and {a["attributes"]["texture"] for a in data["annotations"]} == {"solid"}
    assert "wrote the shapes world" in capsys.readouterr().out
    assert main([str(tmp_path / "x"), "--min-side", "20"]) == 1
    assert capsys.readouterr().err.strip().startswith("error: image sides must satisfy") and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="held-out combination"):
        WorldSpec(held_out=(("purple", "circle"),)).check()


@pytest.mark.slow
def test_benchmark_learning_runs_end_to_end(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "bench"
    result = subprocess.run([sys.executable, "benchmarks/benchmark_learning.py", str(out), "--train", "6", "--val", "6",
                             "--variants", "small", "--cfg-options", "max_iters=2", "batch_size=4"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    whole = load(out / "report.json")
    assert list(whole["variants"]) == ["small"]
    report, run = whole["variants"]["small"], out / "small"
    for when in ("before", "after"):
        for split in ("trained_categories", "held_out_combinations"):
            scores = report[when][split]
            assert 0 <= scores["top1"] <= scores["top5"] <= 100 and scores["boxes"] > 0
    assert report["world"]["chance_top1"]["trained_categories"] == pytest.approx(100 / 12)
    for when in ("before", "after"):
        seg = report[when]["segmentation"]
        assert 0 <= seg["miou"] <= 100 and 0 <= seg["background_iou"] <= 100 and seg["images"] == 6
        assert report[when]["grounding"]["phrases"] > 0 and 0 <= report[when]["grounding"]["accuracy"] <= 100
        assert (run / f"pictures_{when}").is_dir() and any((run / f"pictures_{when}").glob("*_overlay.png"))
    assert report["training_seconds"] > 0 and (run / "work" / "export" / "model.safetensors").is_file()
    # One variant: its mean is its own number.
    assert whole["summary"]["after_miou"]["mean"] == pytest.approx(report["after"]["segmentation"]["miou"])
    assert "held-out combinations" in result.stdout and "segmentation mIoU" in result.stdout
