"""Bulk runs in one process: manifests, resuming, --overwrite, bad files, the COCO file, workers, batching."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgdense.bulk.folder import JOB_NAME, RESERVED_NAME
from fgdense.bulk.runner import Batcher

ROOT = Path(__file__).resolve().parents[1]


def tool(name):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def outputs_in(out: Path) -> list[str]:
    """The names of the files a run wrote for its images into ``out``, sorted: its own hidden bookkeeping
    (the note of the folder's job) aside."""
    return sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("."))


def photos(folder: Path, count: int, sizes=((96, 128), (128, 96))) -> list[Path]:
    """Textured images of two shapes (so two patch counts), different for each index."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        path = folder / f"p{i:02d}.jpg"
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def mtimes(out: Path, stems) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name.split("_")[0].split(".")[0] in stems}


def decode(segmentation):
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": segmentation["size"], "counts": segmentation["counts"].encode()}).astype(bool)


def check_coco_equals_label_maps(coco_path: Path, out: Path, expected_images: int):
    """The COCO file loads with pycocotools and each annotation's mask is its category in the label map."""
    from pycocotools.coco import COCO

    coco = COCO(str(coco_path))
    assert len(coco.imgs) == expected_images
    outputs = {}  # image path -> its JSON output (the COCO file itself is a JSON file there too)
    for path in out.glob("*.json"):
        data = json.loads(path.read_text())
        if "image" in data:
            outputs[data["image"]] = data
    for image in coco.imgs.values():
        label_map = np.asarray(Image.open(out / outputs[image["file_name"]]["outputs"]["label_map"]))
        assert label_map.shape == (image["height"], image["width"])
        present = {int(v) for v in np.unique(label_map) if v}
        annotations = coco.imgToAnns[image["id"]]
        assert {a["category_id"] for a in annotations} == present
        for annotation in annotations:
            assert (coco.annToMask(annotation).astype(bool) == (label_map == annotation["category_id"])).all()
            assert annotation["area"] == int((label_map == annotation["category_id"]).sum())
    return coco


def test_segment_a_manifest_resume_overwrite_bad_files_and_coco(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    images = photos(tmp_path / "imgs", 5)
    truncated = tmp_path / "imgs" / "cut.jpg"
    truncated.write_bytes(images[0].read_bytes()[:200])
    manifest = tmp_path / "list.txt"
    manifest.write_text("\n".join([*(f"imgs/{p.name}" for p in images), "imgs/missing.jpg", "imgs/cut.jpg"]) + "\n")
    monkeypatch.chdir(tmp_path)
    main = tool("segment")
    common = [str(manifest), "--labels", "red", "蓝色|blue", "--model", str(tiny_checkpoint), "--max-patches", "64",
              "--threshold", "none", "--out", "out", "--quiet", "--workers", "0", "--batch-size", "2"]
    out = tmp_path / "out"

    code = main(common + ["--coco", "out/results.json", "--summary", "summary.json"])
    captured = capsys.readouterr()
    assert code == 1  # one process: files that could not be used make the exit code 1, the rest are written
    assert captured.err.strip().splitlines()[-1].startswith("error: 2 of 7 image(s) could not be used")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["written"], summary["skipped_complete"], summary["bad"]) == (5, 0, 2)
    assert summary["bad_by_reason"] == {"missing": 1, "unreadable": 1}
    assert set(summary["seconds_summed_over_processes"]) == {"decode", "model", "write", "waiting"}
    bad = [json.loads(line) for line in (out / "bad_files.jsonl").read_text().splitlines()]
    assert [(Path(b["path"]).name, b["reason"]) for b in bad] == [("missing.jpg", "missing"), ("cut.jpg", "unreadable")]
    assert all(os.path.isabs(b["path"]) for b in bad)  # the list is itself a manifest for a retry
    check_coco_equals_label_maps(out / "results.json", out, 5)
    stems = {p.stem for p in images}
    before = mtimes(out, stems)
    # No hidden leftovers (temporary files, COCO parts, the lock); the list of names the COCO file reserves and
    # the note of the folder's job stay.
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert len(before) == 20 and hidden == sorted([RESERVED_NAME, JOB_NAME])

    # A rerun skips every complete image and says so; nothing is rewritten.
    truncated.unlink()
    manifest.write_text("\n".join(f"imgs/{p.name}" for p in images) + "\n")
    assert main(common + ["--coco", "out/results.json"]) == 0
    assert "5 skipped (outputs already complete" in capsys.readouterr().out
    assert mtimes(out, stems) == before
    assert not (out / "bad_files.jsonl").exists()  # no bad file this time: the old list is gone
    check_coco_equals_label_maps(out / "results.json", out, 5)
    # One of an image's four files gone: that image is not complete, and only it is done again.
    lost = next(p for p in out.iterdir() if p.name.startswith("p01") and p.suffix == ".png")
    lost.unlink()
    assert main(common) == 0
    assert "1 written to out, 4 skipped" in capsys.readouterr().out and lost.is_file()
    before = mtimes(out, stems)
    # The same computation spelt differently (auto is fp32 on a CPU) finds its outputs too.
    assert main(common + ["--precision", "fp32", "--batch-size", "1"]) == 0
    assert "5 skipped" in capsys.readouterr().out

    # --overwrite redoes them; other labels make other outputs, so they are redone without it too.
    assert main(common + ["--overwrite"]) == 0
    assert "5 written" in capsys.readouterr().out
    again = mtimes(out, stems)
    assert all(again[name] > before[name] for name in before)
    assert main(common[:2] + ["green"] + common[4:]) == 0
    assert "5 written" in capsys.readouterr().out
    assert json.loads((out / "p00.json").read_text())["labels"] == ["green"]


def test_workers_in_other_processes_give_the_same_outputs(tmp_path, tiny_checkpoint):
    photos(tmp_path / "imgs", 4)
    main = tool("segment")
    common = [str(tmp_path / "imgs"), "--labels", "red", "blue", "--model", str(tiny_checkpoint), "--max-patches", "64",
              "--threshold", "none", "--no-png", "--quiet"]
    assert main(common + ["--workers", "0", "--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--workers", "2", "--out", str(tmp_path / "b")]) == 0
    for path in sorted((tmp_path / "a").glob("*_labels.png")):
        assert (np.asarray(Image.open(path)) == np.asarray(Image.open(tmp_path / "b" / path.name))).all()


def test_classify_boxes_from_a_jsonl_manifest_with_a_coco_file(tmp_path, tiny_checkpoint, capsys):
    from pycocotools.coco import COCO

    images = photos(tmp_path / "imgs", 4)
    records = [{"path": f"imgs/{images[0].name}", "boxes": [[0, 0, 60, 50], [10, 20, 120, 90]]},
               {"path": f"imgs/{images[1].name}", "boxes": [[5, 5, 40, 40]]},
               {"path": f"imgs/{images[2].name}", "boxes": [[50, 5, 10, 40]]},  # inverted
               {"path": f"imgs/{images[3].name}"}]  # no boxes
    manifest = tmp_path / "boxes.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    code = tool("classify_boxes")([str(manifest), "--labels", "cat", "狗", "car", "--model", str(tiny_checkpoint),
                                   "--out", str(out), "--coco", str(tmp_path / "relabelled.json"), "--quiet",
                                   "--workers", "0", "--top-k", "2"])
    assert code == 1
    assert "bad_boxes 1, no_boxes 1" in capsys.readouterr().out
    coco = COCO(str(tmp_path / "relabelled.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "狗", "car"]
    assert sorted(coco.imgs) == [1, 2]
    for image_id, stem in ((1, images[0].stem), (2, images[1].stem)):
        result = json.loads((out / f"{stem}.json").read_text())
        annotations = coco.imgToAnns[image_id]
        assert len(annotations) == len(result["boxes"])
        for annotation, box in zip(annotations, result["boxes"]):
            x1, y1, x2, y2 = box["xyxy"]
            assert annotation["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert annotation["score"] == box["probability"]
            assert coco.cats[annotation["category_id"]]["name"] == box["label"]
        assert (out / f"{stem}.png").is_file()


def test_ground_a_manifest_with_and_without_candidate_boxes(tmp_path, tiny_checkpoint):
    images = photos(tmp_path / "imgs", 2)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": f"imgs/{images[0].name}", "boxes": [[0, 0, 50, 40], [20, 20, 90, 80]]})
                        + "\n" + json.dumps({"path": f"imgs/{images[1].name}"}) + "\n")
    out = tmp_path / "out"
    code = tool("ground")([str(manifest), "--phrases", "a red mug", "一只猫", "--model", str(tiny_checkpoint),
                           "--out", str(out), "--coco", str(out / "grounded.json"), "--quiet", "--workers", "0",
                           "--no-png"])
    assert code == 0
    first, second = (json.loads((out / f"{p.stem}.json").read_text()) for p in images)
    assert first["mode"] == "candidate boxes" and len(first["phrases"][0]["scores"]) == 2
    assert second["mode"] == "proposals"
    coco = json.loads((out / "grounded.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["a red mug", "一只猫"]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    # Each annotation is its phrase's box, under that phrase's category id (the names differ from the ids' order
    # nowhere else, so an id off by one names another phrase or none).
    expected = [(image_id, p["phrase"], [round(v, 2) for v in (p["box"][0], p["box"][1], p["box"][2] - p["box"][0],
                                                                 p["box"][3] - p["box"][1])])
                for image_id, r in ((1, first), (2, second)) for p in r["phrases"] if p["box"] is not None]
    found = [(a["image_id"], names.get(a["category_id"]), a["bbox"]) for a in coco["annotations"]]
    assert found == expected and len(found) >= 3


def test_a_coco_file_in_the_output_folder_never_takes_an_image_s_name(tmp_path, tiny_checkpoint):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 48), (9, 9, 9)).save(folder / "coco.png")
    out = tmp_path / "out"
    assert tool("segment")([str(folder), "--labels", "red", "--model", str(tiny_checkpoint), "--out", str(out),
                            "--coco", str(out / "coco.json"), "--max-patches", "16", "--quiet", "--no-png"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [JOB_NAME, RESERVED_NAME, "coco-2.json", "coco-2_labels.png",
                                                     "coco.json"]
    assert "images" in json.loads((out / "coco.json").read_text())
    # A rerun without --coco keeps the names: the image is still coco-2 (done), the COCO file untouched.
    coco = (out / "coco.json").read_bytes()
    assert tool("segment")([str(folder), "--labels", "red", "--model", str(tiny_checkpoint), "--out", str(out),
                            "--max-patches", "16", "--quiet", "--no-png"]) == 0
    assert (out / "coco.json").read_bytes() == coco
    assert sorted(p.name for p in out.iterdir()) == [JOB_NAME, RESERVED_NAME, "coco-2.json", "coco-2_labels.png",
                                                     "coco.json"]


@pytest.mark.parametrize("argv, message", [
    (["--coco", "results.txt"], "must end in .json"),
    (["--coco", "nofolder/results.json"], "does not exist"),
    (["--workers", "-1"], "--workers"),
    (["--workers", "100000"], "--workers 100000 is more than this machine can run: at most"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_bulk_flag_mistakes_give_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, argv, message):
    photos(tmp_path, 1)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = tool("segment")(["p00.jpg", "--labels", "cat", "--model", "never-loaded", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


class _Ready:
    def __init__(self, patches):
        self.image = type("I", (), {"patches": patches})()


def test_the_batcher_groups_equal_patch_counts_and_holds_back_at_most_a_batch():
    batcher = Batcher(batch_size=3, max_tokens=100)
    emitted = []
    for patches in [20, 30, 20, 20, 30, 40]:
        emitted += [[p.image.patches for p in group] for group in batcher.add(_Ready(patches))]
        assert sum(len(g) for g in batcher.groups.values()) <= 3
    emitted += [[p.image.patches for p in group] for group in batcher.drain()]
    assert emitted[0] == [20, 20, 20]  # a full group of equal size
    assert sorted(sum(emitted, [])) == sorted([20, 30, 20, 20, 30, 40])
    assert all(len(set(group)) == 1 for group in emitted)
    # The token budget: 4 images of 30 patches would be 120 > 100.
    tokens = Batcher(batch_size=10, max_tokens=100)
    groups = [g for n in range(4) for g in tokens.add(_Ready(30))]
    assert [len(g) for g in groups] == [3]


def test_an_image_the_model_fails_on_is_a_bad_file_and_its_batch_mates_are_written(tmp_path, tiny_checkpoint):
    from fgdense.bulk.jobs import SegmentJob
    from fgdense.bulk.runner import RunOptions, run
    from fgdense.io.sources import Sources
    from fgdense.segment import Segmenter

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, colour in (("a", (200, 10, 10)), ("b", (0, 0, 255)), ("c", (10, 200, 10))):
        Image.new("RGB", (64, 48), colour).save(folder / f"{name}.png")  # one size: one batch of three
    segmenter = Segmenter.from_pretrained(tiny_checkpoint, max_num_patches=16, threshold=None)
    real = segmenter.segment_batch

    calls = []

    def fails_on_blue(images, labels, **overrides):
        calls.append(len(images))
        if any(image.image.getpixel((0, 0)) == (0, 0, 255) for image in images):
            raise RuntimeError("planted failure")
        return real(images, labels, **overrides)

    segmenter.segment_batch = fails_on_blue
    job = SegmentJob(segmenter, tmp_path / "out", ["red"], pictures=False, cap=16)
    (tmp_path / "out").mkdir()
    summary = run(job, Sources([folder]), RunOptions(out=tmp_path / "out", batch_size=8, total=3, progress=False))
    assert calls == [3, 1, 1, 1]  # the batch failed, so each image was tried alone
    assert (summary["written"], summary["bad_by_reason"]) == (2, {"model_failed": 1})
    bad = json.loads((tmp_path / "out" / "bad_files.jsonl").read_text())
    assert bad["path"].endswith("b.png") and "planted failure" in bad["detail"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == ["a.json", "c.json"]


def test_the_coco_file_holds_only_this_runs_outputs(tmp_path, tiny_checkpoint):
    """Outputs of an earlier run with other labels in the same folder are not this run's results."""
    images = photos(tmp_path / "imgs", 2)
    manifest = tmp_path / "boxes.jsonl"

    def run(labels, boxes_of_second):
        records = [{"path": str(images[0]), "boxes": [[0, 0, 60, 50]]}, {"path": str(images[1]), "boxes": boxes_of_second}]
        manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
        return tool("classify_boxes")([str(manifest), "--labels", *labels, "--model", str(tiny_checkpoint), "--out",
                                       str(tmp_path / "out"), "--coco", str(tmp_path / "run.json"), "--quiet",
                                       "--workers", "0", "--no-png"])

    assert run(["cat", "dog"], [[5, 5, 40, 40]]) == 0
    assert len(json.loads((tmp_path / "run.json").read_text())["images"]) == 2
    # Now the second image's boxes are bad: it is not redone, and its old JSON (labels cat, dog) stays.
    assert run(["car", "bus"], [[50, 5, 10, 40]]) == 1
    assert json.loads((tmp_path / "out" / f"{images[1].stem}.json").read_text())["labels"] == ["cat", "dog"]
    coco = json.loads((tmp_path / "run.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == [str(images[0])]
    assert [c["name"] for c in coco["categories"]] == ["car", "bus"] and len(coco["annotations"]) == 1


def test_ctrl_c_anywhere_in_the_main_thread_counts_every_finished_image_once(tmp_path, tiny_checkpoint, monkeypatch):
    """The line Ctrl-C prints says how many images are finished: it must equal the images whose files are
    complete, even when the interrupt lands right after the writer finished one and before the main thread
    took note (here: in the middle of collecting the third write)."""
    import concurrent.futures

    from fgdense.bulk.jobs import SegmentJob
    from fgdense.bulk.runner import RunOptions, run
    from fgdense.cli import Status
    from fgdense.io.sources import Sources
    from fgdense.segment import Segmenter

    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(6):
        Image.new("RGB", (64, 48), (40 * k, 10, 10)).save(folder / f"p{k}.png")
    segmenter = Segmenter.from_pretrained(tiny_checkpoint, max_num_patches=16, threshold=None)
    job = SegmentJob(segmenter, tmp_path / "out", ["red"], pictures=False, cap=16)
    (tmp_path / "out").mkdir()
    real_result, calls = concurrent.futures.Future.result, []

    def interrupted_result(self, timeout=None):
        value = real_result(self, timeout)  # the write is complete on disk
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return value

    monkeypatch.setattr(concurrent.futures.Future, "result", interrupted_result)
    status = Status()
    with pytest.raises(KeyboardInterrupt):
        run(job, Sources([folder]), RunOptions(out=tmp_path / "out", batch_size=1, total=6, progress=False),
            status=status)
    complete = len(list((tmp_path / "out").glob("p*.json")))
    assert complete >= 3 and status.done == complete
