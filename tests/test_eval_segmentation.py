"""Segmentation evaluation: IoU / mIoU / pixel accuracy with known answers, both dataset layouts, the tool."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgdense.dense import rgb_of
from fgdense.errors import DatasetError
from fgdense.evaluation.segmentation import (
    CocoDataset, FolderDataset, confusion_matrix, evaluate_segmentation, format_report, scores_from_confusion,
)
from fgdense.processing import FGCLIP2ImageProcessor
from fgdense.segment import SegmentationResult, Segmenter
from test_segment import BLUE, GREEN, RED, PlantedSegmenter, planted_scene

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "eval_segmentation.py"
CLASSES = ["background", "cat", "dog"]
COLOURS = np.array([(0, 0, 0), (200, 0, 0), (0, 0, 200)], np.uint8)  # the image shows its class by colour
GT = {
    "a": np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 255, 255],
                   [2, 2, 0, 0]]),
    "b": np.array([[1, 1, 1, 255],
                   [0, 0, 2, 2]]),
}  # scored pixels: background 8, cat 7, dog 6 (21 in all); 3 ignored


def write_folder_dataset(root: Path, gts=GT, colours=COLOURS, classes=CLASSES) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, gt in gts.items():
        Image.fromarray(colours[np.where(gt == 255, 0, gt)]).save(root / "images" / f"{name}.png")
        label = Image.fromarray(gt.astype(np.uint8))
        label.putpalette(list(range(256)) * 3)  # a palette PNG, VOC style: the values stay class indices
        label.save(root / "labels" / f"{name}.png")
    (root / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    return root


def colour_reader(image) -> np.ndarray:
    """The perfect predictor: reads each pixel's class off its colour."""
    pixels = np.asarray(image)
    return np.argmin(np.abs(pixels[:, :, None, :].astype(int) - COLOURS[None, None].astype(int)).sum(-1), axis=-1)


class MapSegmenter(Segmenter):
    """A test double for the model: it predicts the class indices ``predict(image)`` (as label-map values:
    a class that is not a label, and "no class", are its background), so the evaluation's whole path (the
    bulk runner, the records, the reduction) runs on known predictions."""

    def __init__(self, predict, class_names):
        super().__init__(model=None, processor=FGCLIP2ImageProcessor(max_num_patches=64), threshold=None)
        self.predict, self.class_names = predict, list(class_names)

    def segment_batch(self, images, labels, **overrides):
        out = []
        for image in images:
            to_label = np.array([labels.index(n) if n in labels else -1 for n in self.class_names] + [-1])
            label_map = to_label[np.asarray(self.predict(rgb_of(image)))].astype(np.int32)
            out.append(SegmentationResult(list(labels), np.zeros((len(labels), *label_map.shape), np.float32),
                                          label_map, None, []))
        return out


def evaluate(predict, dataset, **kwargs):
    return evaluate_segmentation(MapSegmenter(predict, dataset.class_names), dataset, progress=False, **kwargs)


def test_confusion_matrix_counts_and_ignores():
    gt = np.array([[0, 1, 255], [1, 1, 0]])
    pred = np.array([[0, 0, 1], [1, 5, 0]])  # 5 is "no class"
    conf = confusion_matrix(pred, gt, 2)
    assert conf.tolist() == [[2, 0, 0], [1, 1, 1]]
    with pytest.raises(DatasetError, match=r"\[7\]"):
        confusion_matrix(pred, np.array([[0, 7, 0], [0, 0, 0]]), 2)


def test_perfect_predictor_scores_one(tmp_path):
    root = write_folder_dataset(tmp_path)
    dataset = FolderDataset(root / "images", root / "labels", root / "classes.txt")
    assert dataset.class_names == CLASSES and len(dataset) == 2
    report = evaluate(colour_reader, dataset)
    assert report["miou"] == 1.0 and report["pixel_accuracy"] == 1.0 and report["mean_accuracy"] == 1.0
    assert report["scored_pixels"] == 21 and report["images"] == 2 and report["complete"]
    assert [row["gt_pixels"] for row in report["per_class"]] == [8, 7, 6]


def test_wrong_predictors_score_the_hand_computed_values(tmp_path):
    root = write_folder_dataset(tmp_path)
    dataset = FolderDataset(root / "images", root / "labels", root / "classes.txt")

    # Everything "cat": cat IoU = 7 / 21 (its 7 pixels over all 21 scored), the others 0.
    report = evaluate(lambda im: np.ones((im.height, im.width), int), dataset)
    assert [row["iou"] for row in report["per_class"]] == pytest.approx([0.0, 7 / 21, 0.0])
    assert report["miou"] == pytest.approx(1 / 9)
    assert report["pixel_accuracy"] == pytest.approx(7 / 21)
    assert report["mean_accuracy"] == pytest.approx(1 / 3)
    # The report keeps the pixel confusion matrix, non-zero cells only (ground truth -> prediction).
    assert report["confusion"] == {"0": {"1": 8}, "1": {"1": 7}, "2": {"1": 6}}

    # Cat and dog swapped: background perfect, cat and dog IoU 0.
    swap = np.array([0, 2, 1])
    report = evaluate(lambda im: swap[colour_reader(im)], dataset)
    assert report["miou"] == pytest.approx(1 / 3)
    assert report["pixel_accuracy"] == pytest.approx(8 / 21)

    # Nothing predicted ("no class" everywhere): every class present in the ground truth scores 0.
    report = evaluate(lambda im: np.full((im.height, im.width), 3), dataset)
    assert report["miou"] == 0.0 and report["pixel_accuracy"] == 0.0
    assert report["confusion"] == {"0": {"3": 8}, "1": {"3": 7}, "2": {"3": 6}}  # column 3: "no class"


def test_class_absent_everywhere_is_left_out_of_miou():
    conf = confusion_matrix(np.array([[0, 1]]), np.array([[0, 1]]), 3)
    report = scores_from_confusion(conf, ["a", "b", "c"])
    assert report["per_class"][2]["iou"] is None and report["miou"] == 1.0


def test_folder_dataset_errors(tmp_path):
    root = write_folder_dataset(tmp_path)
    (root / "images" / "a.png").unlink()
    with pytest.raises(DatasetError, match="a.png"):
        FolderDataset(root / "images", root / "labels", root / "classes.txt")
    with pytest.raises(DatasetError, match="does not exist"):
        FolderDataset(root / "nope", root / "labels", CLASSES)
    with pytest.raises(DatasetError, match="not in the class list"):
        FolderDataset(root / "images", root / "labels", CLASSES, background_class="sky")


def _coco_file(tmp_path) -> tuple[Path, np.ndarray]:
    """One 12x10 image: a cat (RLE), a dog (polygon) on the cat, a crowd region; COCO category ids 3 and 7."""
    from pycocotools import mask as mask_utils

    cat = np.zeros((10, 12), np.uint8)
    cat[1:8, 1:9] = 1
    crowd = np.zeros((10, 12), np.uint8)
    crowd[8:10, 10:12] = 1

    def rle(mask):
        encoded = mask_utils.encode(np.asfortranarray(mask))
        return {"size": encoded["size"], "counts": encoded["counts"].decode()}

    dog_polygon = [4, 3, 8, 3, 8, 6, 4, 6]  # x, y pairs: a 4 x 3 rectangle, lying on the cat
    anns = [
        {"id": 1, "image_id": 5, "category_id": 3, "segmentation": rle(cat), "area": int(cat.sum()), "iscrowd": 0,
         "bbox": [1, 1, 8, 7]},
        {"id": 2, "image_id": 5, "category_id": 7, "segmentation": [dog_polygon], "area": 12, "iscrowd": 0,
         "bbox": [4, 3, 4, 3]},
        {"id": 3, "image_id": 5, "category_id": 7, "segmentation": rle(crowd), "area": 4, "iscrowd": 1,
         "bbox": [10, 8, 2, 2]},
    ]
    coco = {"images": [{"id": 5, "file_name": "x.png", "height": 10, "width": 12}], "annotations": anns,
            "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    return path, cat


def test_coco_dataset_ground_truth(tmp_path):
    path, cat = _coco_file(tmp_path)
    (tmp_path / "img").mkdir()
    dataset = CocoDataset(path, tmp_path / "img", background_class="background")
    assert dataset.class_names == ["background", "cat", "dog"] and dataset.background_index == 0
    gt = dataset.ground_truth(0)
    assert gt.shape == (10, 12)
    dog = gt == 2
    assert 8 <= dog.sum() <= 20 and dog[4, 5] and not dog[0].any()  # the polygon, rasterised
    assert ((gt == 1) == (cat.astype(bool) & ~dog)).all()  # the dog lies on the cat
    assert (gt[8:10, 10:12] == 255).all() and gt[0, 11] == 0  # crowd ignored; unannotated = background
    # Without a background class, unannotated pixels are not scored.
    plain = CocoDataset(path, tmp_path / "img").ground_truth(0)
    assert plain[0, 11] == 255 and (plain[gt == 1] == 0).all() and (plain[dog] == 1).all()

    # The perfect predictor on the image painted from this ground truth scores 1.
    Image.fromarray(COLOURS[np.where(gt == 255, 0, gt)]).save(tmp_path / "img" / "x.png")
    report = evaluate(colour_reader, dataset)
    assert report["miou"] == 1.0 and report["scored_pixels"] == 10 * 12 - 4


def test_planted_segmenter_through_the_evaluation(tmp_path):
    """The Segmenter path: labels = class names, background class = the segmenter's background."""
    image, truth = planted_scene()
    gt = np.zeros(truth["red"].shape, np.int64)
    gt[truth["red"]] = 1
    gt[truth["blue"]] = 2
    gt[truth["green"]] = 255
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    image.save(root / "images" / "scene.jpg", quality=98)
    Image.fromarray(gt.astype(np.uint8)).save(root / "labels" / "scene.png")
    dataset = FolderDataset(root / "images", root / "labels", ["background", "red", "blue"],
                            background_class="background")
    segmenter = PlantedSegmenter({"red": RED, "blue": BLUE, "green": GREEN}, threshold=0.5,
                                 processor=FGCLIP2ImageProcessor(max_num_patches=64))
    report = evaluate_segmentation(segmenter, dataset, progress=False)
    assert all(row["iou"] > 0.9 for row in report["per_class"]), report["per_class"]
    assert report["pixel_accuracy"] > 0.97


def load_tool():
    spec = importlib.util.spec_from_file_location("eval_segmentation_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_runs_on_both_layouts_with_the_tiny_checkpoint(tmp_path, tiny_checkpoint):
    root = write_folder_dataset(tmp_path / "folder")
    run = subprocess.run(
        [sys.executable, str(TOOL), "--images", str(root / "images"), "--masks", str(root / "labels"),
         "--classes", str(root / "classes.txt"), "--model", str(tiny_checkpoint), "--background-class", "background",
         "--max-patches", "16", "--out", str(tmp_path / "folder_out"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "folder_out" / "report.json").read_text())
    assert report["images"] == 2 and report["scored_pixels"] == 21 and 0 <= report["miou"] <= 1
    assert report["settings"]["max_patches"] == 16 and report["settings"]["precision"] == "fp32"
    text = (tmp_path / "folder_out" / "report.json").read_text()
    assert '"threshold": 0.1,' in text  # the tiny model's float32 cosine 0.10000000149011612, spelt as typed
    assert "mIoU" in run.stdout

    path, _ = _coco_file(tmp_path)
    (tmp_path / "img").mkdir()
    Image.new("RGB", (12, 10), (90, 120, 30)).save(tmp_path / "img" / "x.png")
    code = load_tool().main(["--images", str(tmp_path / "img"), "--ann", str(path), "--model", str(tiny_checkpoint),
                             "--threshold", "none", "--out", str(tmp_path / "coco_out"), "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "coco_out" / "report.json").read_text())
    assert [row["class"] for row in report["per_class"]] == ["cat", "dog"] and report["threshold"] is None


@pytest.mark.parametrize("argv, message", [
    (["--masks", "labels"], "--classes"),
    (["--masks", "labels", "--classes", "nope.txt"], "class list nope.txt does not exist"),
    (["--ann", "nope.json"], "annotation file nope.json does not exist"),
    (["--masks", "labels", "--classes", "classes.txt", "--threshold", "x"], "--threshold"),
    (["--masks", "labels", "--classes", "classes.txt", "--out", "classes.txt"], "--out classes.txt is a file"),
    (["--masks", "labels", "--classes", "classes.txt", "--max-patches", "99999"], "from 1 to 16384"),
])
def test_tool_bad_input_gives_one_line(tmp_path, monkeypatch, capsys, argv, message):
    write_folder_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = load_tool().main(["--images", "images", "--model", "never-loaded"] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_images_are_scored_as_stored_not_exif_rotated(tmp_path):
    """Label maps refer to the stored pixels: an EXIF orientation tag must not rotate the image."""
    root = write_folder_dataset(tmp_path, gts={"a": GT["a"][:, :3]})  # 4 high, 3 wide: rotation would show
    stored = Image.open(root / "images" / "a.png").convert("RGB")
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees when displayed"
    (root / "images" / "a.png").unlink()
    stored.save(root / "images" / "a.png", exif=exif)
    dataset = FolderDataset(root / "images", root / "labels", root / "classes.txt")
    report = evaluate(colour_reader, dataset)
    assert report["miou"] == 1.0


def test_reduce_zero_label_ade20k_style(tmp_path):
    # ADE20K: 0 = "other" (not scored), 1..K = classes 0..K-1; 255 stays ignored.
    gts = {"a": np.array([[0, 1, 1], [2, 3, 255]])}
    root = write_folder_dataset(tmp_path, gts={"a": np.zeros((2, 3), int)}, classes=CLASSES)
    Image.fromarray(gts["a"].astype(np.uint8)).save(root / "labels" / "a.png")
    dataset = FolderDataset(root / "images", root / "labels", root / "classes.txt", reduce_zero_label=True)
    assert dataset.ground_truth(0).tolist() == [[255, 0, 0], [1, 2, 255]]


def test_coco_annotation_with_unknown_category(tmp_path):
    path, _ = _coco_file(tmp_path)
    data = json.loads(Path(path).read_text())
    data["annotations"][0]["category_id"] = 999
    Path(path).write_text(json.dumps(data))
    dataset = CocoDataset(path, tmp_path)
    with pytest.raises(DatasetError, match="category_id 999"):
        dataset.ground_truth(0)


def test_images_missing_unreadable_or_outside_the_folder_are_counted(tmp_path):
    path, _ = _coco_file(tmp_path)
    data = json.loads(Path(path).read_text())
    first = dict(data["images"][0])
    data["images"] = [dict(first, id=1, file_name="../../etc/passwd"), dict(first, id=2, file_name="gone.png"),
                      dict(first, id=3, file_name="broken.png")]
    data["annotations"] = []
    Path(path).write_text(json.dumps(data))
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    dataset = CocoDataset(path, tmp_path / "img")
    assert dataset.image_path(0) is None  # never opened
    report = evaluate(colour_reader, dataset)
    assert report["skipped"] == {"missing_image": 1, "unreadable_image": 1, "outside_images": 1,
                                 "unreadable_ground_truth": 0, "bad_mask_annotation": 0,
                                 "ground_truth_out_of_range": 0, "bad_ground_truth": 0, "failed": 0}
    assert report["images_scored"] == 0


def test_an_ignore_index_other_than_255_is_honoured(tmp_path):
    """Label maps whose "not scored" value is 9: those pixels are left out, wherever the evaluation scores."""
    root = write_folder_dataset(tmp_path)
    for name, gt in GT.items():  # the label maps say "not scored" with 9 instead of 255
        Image.fromarray(np.where(gt == 255, 9, gt).astype(np.uint8)).save(root / "labels" / f"{name}.png")
    dataset = FolderDataset(root / "images", root / "labels", root / "classes.txt", ignore_index=9)
    report = evaluate(colour_reader, dataset)
    assert report["ignore_index"] == 9 and report["scored_pixels"] == 21 and report["miou"] == 1.0
    assert report["images_scored"] == 2 and not any(report["skipped"].values())


def test_bad_label_maps_are_skipped_and_counted_before_the_model(tmp_path):
    """A corrupt, a cut-short and an out-of-range label map: each image skipped by reason, the rest scored."""
    root = write_folder_dataset(tmp_path, gts={"a": GT["a"], "b": GT["b"], "c": GT["b"], "d": GT["b"]})
    (root / "labels" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    whole = (root / "labels" / "c.png").read_bytes()
    (root / "labels" / "c.png").write_bytes(whole[: len(whole) // 2])
    Image.fromarray(np.full(GT["b"].shape, 7, np.uint8)).save(root / "labels" / "d.png")  # class 7 of 3
    dataset = FolderDataset(root / "images", root / "labels", root / "classes.txt")
    seen = []
    report = evaluate(lambda im: seen.append(im.size) or colour_reader(im), dataset)
    assert report["skipped"]["unreadable_ground_truth"] == 2 and report["skipped"]["ground_truth_out_of_range"] == 1
    assert report["images_scored"] == 1 and report["miou"] == 1.0 and report["scored_pixels"] == 14
    assert len(seen) == 1  # the model never saw the three images it could not score
    assert "unreadable_ground_truth 2, ground_truth_out_of_range 1" in format_report(report)


def test_bad_coco_polygons_and_rles_are_skipped_and_counted(tmp_path):
    path, _ = _coco_file(tmp_path)
    data = json.loads(Path(path).read_text())
    good = dict(data["images"][0])
    bad_masks = {2: [[1, 1, 5]], 3: {"size": [10, 12], "counts": "\x00garbage"}, 4: {"size": [5, 5], "counts": [3, 4]},
                 6: [[1, 1, 5, "x", 6, 6]], 7: {"size": [10, 12], "counts": [3, 4]},
                 # a point far past the image: pycocotools would rasterise every pixel of the edge to it
                 # (1e300 asks for gigabytes; here 1e6, so the test itself stays small whatever the code)
                 8: [[0, 0, 1e6, 0, 5, 5]], 9: [[0, 0, True, 0, 5, 5]]}
    data["images"] = [good] + [dict(good, id=i, file_name=f"{i}.png") for i in bad_masks]
    data["annotations"] += [{"id": 10 + i, "image_id": i, "category_id": 3, "segmentation": seg, "area": 4,
                             "iscrowd": 0, "bbox": [1, 1, 2, 2]} for i, seg in bad_masks.items()]
    Path(path).write_text(json.dumps(data))
    (tmp_path / "img").mkdir()
    for name in ["x.png"] + [f"{i}.png" for i in bad_masks]:
        Image.new("RGB", (12, 10), (0, 0, 0)).save(tmp_path / "img" / name)
    report = evaluate(colour_reader, CocoDataset(path, tmp_path / "img"))
    assert report["skipped"]["bad_mask_annotation"] == len(bad_masks) and report["images_scored"] == 1
    assert f"bad_mask_annotation {len(bad_masks)}" in format_report(report)


def test_more_classes_than_a_dense_confusion_takes_are_refused_when_read(tmp_path):
    from fgdense.evaluation.segmentation_data import MAX_CLASSES

    root = write_folder_dataset(tmp_path)
    many = [f"class {i}" for i in range(MAX_CLASSES + 1)]
    (root / "classes.txt").write_text("\n".join(many) + "\n")
    with pytest.raises(DatasetError, match=f"has {MAX_CLASSES + 1} classes; .* at most {MAX_CLASSES}"):
        FolderDataset(root / "images", root / "labels", root / "classes.txt")
    path, _ = _coco_file(tmp_path)
    data = json.loads(Path(path).read_text())
    data["categories"] = [{"id": i, "name": name} for i, name in enumerate(many, 1)]
    Path(path).write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="at most"):
        CocoDataset(path, tmp_path)
