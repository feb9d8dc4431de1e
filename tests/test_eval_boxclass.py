"""Box-classification evaluation: each official protocol exactly, for tokenizers with and without a mask;
sharded, resumable, never writing over an input or another run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.reference import official_box_classification
from conftest import CHECKPOINT
from fgdense.classify import BoxClassifier
from fgdense.errors import DatasetError
from fgdense.evaluation import evaluate_box_classification, load_boxclass_dataset
from fgdense.evaluation.protocols import choose_protocol, imagenet_templates

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "eval_boxclass.py"
# Non-contiguous ids; Chinese and English names; capitals (kept by BoxClass-CN, lower-cased by COCO/LVIS);
# an LVIS-style underscore.
CATEGORIES = [(3, "猫"), (7, "dog"), (12, "Red Mug"), (40, "Traffic_Light"), (41, "电脑"), (100, "T恤"),
              (230, "iPhone")]


def make_dataset(folder: Path, seed: int = 0, categories=CATEGORIES) -> tuple[Path, Path]:
    """Generated images with coloured rectangles and their boxes, plus the awkward cases.

    One image file is missing (2 annotations), one box has zero area, one image is listed by LVIS's
    ``coco_url`` only, one image has no annotations, one annotation names an unknown category, one
    image's name leads outside the images folder.
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
            category = categories[rng.integers(len(categories))][0]
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
    annotations.append({"id": 901, "image_id": 1007, "category_id": 7, "bbox": [10.0, 10.0, 0.0, 20.0]})  # zero area
    images.append({"id": 5, "file_name": "not_there.png", "height": 50, "width": 50})
    annotations += [{"id": 902, "image_id": 5, "category_id": 3, "bbox": [1.0, 1.0, 20.0, 20.0]},
                    {"id": 903, "image_id": 5, "category_id": 12, "bbox": [5.0, 5.0, 20.0, 20.0]}]
    images.append({"id": 6, "file_name": "img_0.png", "height": 48, "width": 64})  # no annotations
    annotations.append({"id": 904, "image_id": 1000, "category_id": 999, "bbox": [1.0, 1.0, 9.0, 9.0]})
    shutil.copy(images_dir / "img_0.png", folder / "secret.png")  # beside the images folder, not in it
    images.append({"id": 7, "file_name": "../secret.png", "height": 48, "width": 64})
    annotations.append({"id": 905, "image_id": 7, "category_id": 7, "bbox": [1.0, 1.0, 9.0, 9.0]})
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": cid, "name": name} for cid, name in categories]}
    ann = folder / "ann.json"
    ann.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return ann, images_dir


def read_predictions(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def run_tool(*argv):
    return subprocess.run([sys.executable, str(TOOL), *argv], capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("boxclass"))


@pytest.fixture(scope="module")
def no_mask_tokenizer(ref_tokenizer):
    """The fixture's tokenizer, made to return input ids only (as SigLIP's does)."""
    import copy

    tokenizer = copy.deepcopy(ref_tokenizer)
    tokenizer.model_input_names = ["input_ids"]
    assert "attention_mask" not in tokenizer(["a cat"])
    return tokenizer


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    """The tool, single process, protocol auto (COCO here: most names are English), with its picture."""
    ann, images_dir = dataset
    out = tmp_path_factory.mktemp("full")
    done = run_tool("--ann", str(ann), "--images", str(images_dir), "--model", str(CHECKPOINT), "--out", str(out),
                    "--workers", "1", "--batch-size", "2", "--quiet", "--plot")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "protocol coco" in done.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return report, out / "predictions.jsonl"


def test_the_report_records_the_settings(full_run):
    report, _ = full_run
    assert report["settings"]["model"] == str(CHECKPOINT)
    assert report["settings"]["max_patches"] == "checkpoint" and report["settings"]["precision"] == "fp32"


# ------------------------------------------------------------------------------ the official protocols
@pytest.mark.parametrize("protocol", ["boxclass-cn", "coco", "lvis"])
@pytest.mark.parametrize("mask", ["tokenizer returns a mask", "tokenizer returns no mask"])
def test_each_protocol_equals_the_official_script(dataset, ref_model, ref_processor, ref_tokenizer, no_mask_tokenizer,
                                                  protocol, mask):
    ann, images_dir = dataset
    tokenizer = ref_tokenizer if mask == "tokenizer returns a mask" else no_mask_tokenizer
    classifier = BoxClassifier(ref_model, ref_processor, tokenizer, precision="fp32")
    report = evaluate_box_classification(classifier, ann, images_dir, protocol=protocol, progress=False)
    official = official_box_classification(ref_model, ref_processor, tokenizer, ann, images_dir, protocol)
    assert report["protocol"] == protocol
    assert report["evaluated"] == len(official["predictions"]) == 15
    assert report["top1"] == official["top1"] and report["top5"] == official["top5"]
    assert 0 < report["top5"] and report["top1"] < 1  # a random model: the numbers say something


@pytest.mark.parametrize("protocol", ["boxclass-cn", "coco", "lvis"])
def test_each_protocols_category_embeddings_equal_the_official_ones(dataset, ref_model, ref_processor, ref_tokenizer,
                                                                   protocol):
    """Per category, not only in aggregate: each row equals the official script's text features."""
    from benchmarks.reference import official_text_features
    from fgdense.evaluation.boxclass import category_embeddings
    from fgdense.evaluation.protocols import protocol_named

    data = load_boxclass_dataset(dataset[0])
    names = [name for _, name in data.categories]
    ours = category_embeddings(BoxClassifier(ref_model, ref_processor, ref_tokenizer), data, protocol_named(protocol))
    official = official_text_features(ref_model, ref_tokenizer, names, protocol)
    for row, name in enumerate(names):
        assert np.allclose(ours[row], official[row], atol=1e-6), (protocol, name)
    # The rules are real on this tokenizer: LVIS's "_" to space, and only LVIS's, moves "Traffic_Light".
    light = names.index("Traffic_Light")
    coco, lvis = (official_text_features(ref_model, ref_tokenizer, ["Traffic_Light"], p)[0] for p in ("coco", "lvis"))
    assert (coco - lvis).abs().max() > 1e-3
    if protocol != "boxclass-cn":
        assert np.allclose(ours[light], lvis if protocol == "lvis" else coco, atol=1e-6)


def test_per_annotation_predictions_equal_the_official_script(dataset, full_run, ref_model, ref_processor,
                                                              ref_tokenizer):
    ann, images_dir = dataset
    report, preds_path = full_run
    official = official_box_classification(ref_model, ref_processor, ref_tokenizer, ann, images_dir, "coco")
    header, records = read_predictions(preds_path)
    assert header["fgdense_boxclass_predictions"]["protocol"] == "coco"
    scored = {r["annotation_id"]: r for r in records if "skipped" not in r}
    assert scored.keys() == official["predictions"].keys()
    for aid, (ids, scores) in official["predictions"].items():
        assert scored[aid]["top5"] == ids, aid
        assert np.allclose(scored[aid]["scores"], scores, atol=1e-5), aid
    # Every skip is reported, by reason; nothing outside the images folder was opened.
    assert report["skipped"] == {"missing_image": 2, "unreadable_image": 0, "outside_images": 1, "degenerate_box": 1,
                                 "unknown_image_id": 0, "unknown_category": 1, "failed": 0}
    assert report["annotations"] == report["evaluated"] + report["skipped_total"] == 20
    assert report["complete"] and report["images"] == report["images_done"] == 7
    skipped = {r["annotation_id"]: r["skipped"] for r in records if "skipped" in r}
    assert skipped == {901: "degenerate_box", 902: "missing_image", 903: "missing_image", 905: "outside_images"}
    # Per-category accuracy adds up, keyed by the real (non-contiguous) ids, names as written.
    per = report["per_category"]
    assert set(per) == {str(c) for c, _ in CATEGORIES} and per["230"]["name"] == "iPhone"
    assert sum(c["evaluated"] for c in per.values()) == report["evaluated"]
    assert sum(c["top1_correct"] for c in per.values()) == report["top1_correct"]
    # The top-1 confusion counts are the predictions file's (true id, top-1 id) pairs; the diagonal is top-1 correct.
    pairs = {}
    for r in scored.values():
        pairs.setdefault(str(r["category_id"]), {}).setdefault(str(r["top5"][0]), 0)
        pairs[str(r["category_id"])][str(r["top5"][0])] += 1
    assert report["confusion"] == pairs
    assert all(report["confusion"].get(cid, {}).get(cid, 0) == c["top1_correct"] for cid, c in per.items())


def test_plot_beside_the_report_shows_the_predictions_confusions(full_run):
    """--plot: plot.png beside the report, a real picture, its matrix the predictions file's top-1 mistakes."""
    from fgdense.evaluation.plots import confusion_of, shown_matrix

    report, preds_path = full_run
    plot = preds_path.parent / "plot.png"
    with Image.open(plot) as picture:
        assert picture.format == "PNG" and picture.width >= 1000 and picture.height >= 300
        picture.load()
    ids = list(report["per_category"])
    expected = np.zeros((len(ids), len(ids)), np.int64)
    for r in read_predictions(preds_path)[1]:
        if "skipped" not in r:
            expected[ids.index(str(r["category_id"])), ids.index(str(r["top5"][0]))] += 1
    confusion = confusion_of(report)
    assert confusion.names == [name for _, name in CATEGORIES]  # 猫, 电脑, T恤 drawn with the bundled font
    assert (confusion.counts[:, :-1] == expected).all() and not confusion.counts[:, -1].any()
    shown = shown_matrix(confusion)
    assert len(shown.order) == len([i for i in range(len(ids)) if expected[i].any() or expected[:, i].any()])
    assert np.allclose(shown.rows.sum(1), 1)


def test_boxclass_cn_keeps_the_case_of_names_and_coco_lowers_it(dataset, ref_model, ref_processor, ref_tokenizer):
    """The case rule is real: the tokenizer tells 'iPhone' from 'iphone', and only BoxClass-CN keeps it."""
    from fgdense.evaluation.boxclass import category_embeddings
    from fgdense.evaluation.protocols import protocol_named
    from fgdense.prompts import encode_text

    data = load_boxclass_dataset(dataset[0])
    classifier = BoxClassifier(ref_model, ref_processor, ref_tokenizer)
    cn = category_embeddings(classifier, data, protocol_named("boxclass-cn"))
    iphone = [name for _, name in data.categories].index("iPhone")
    kept = encode_text(ref_model, ref_tokenizer, ["iPhone"], "box", lowercase=False)[0]
    lowered = encode_text(ref_model, ref_tokenizer, ["iPhone"], "box")[0]
    assert (kept - lowered).abs().max() > 1e-3
    assert np.allclose(cn[iphone], kept, atol=1e-6)
    coco = category_embeddings(classifier, data, protocol_named("coco"))
    prompts = [t.format("iphone") for t in imagenet_templates()]
    want = encode_text(ref_model, ref_tokenizer, prompts, "box").mean(0)
    assert np.allclose(coco[iphone], want / want.norm(), atol=1e-6)


def test_auto_picks_the_protocol_from_the_file(tmp_path, dataset):
    data = load_boxclass_dataset(dataset[0])
    assert choose_protocol("auto", data).name == "coco"
    chinese = [(1, "猫"), (2, "电脑"), (3, "T恤"), (4, "iPhone")]
    ann, _ = make_dataset(tmp_path / "cn", categories=chinese)
    assert choose_protocol("auto", load_boxclass_dataset(ann)).name == "boxclass-cn"
    lvis = json.loads(dataset[0].read_text(encoding="utf-8"))
    for cat in lvis["categories"]:
        cat.update(synonyms=[cat["name"]], frequency="c")
    (tmp_path / "lvis.json").write_text(json.dumps(lvis, ensure_ascii=False), encoding="utf-8")
    assert choose_protocol("auto", load_boxclass_dataset(tmp_path / "lvis.json")).name == "lvis"
    assert len(imagenet_templates()) == 80 and imagenet_templates()[0] == "a bad photo of a {}."


def test_own_prompt_templates(dataset, tmp_path, ref_model, ref_processor, ref_tokenizer):
    ann, images_dir = dataset
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a {}.\n\nthis is a {}\n", encoding="utf-8")
    report = evaluate_box_classification(BoxClassifier(ref_model, ref_processor, ref_tokenizer), ann, images_dir,
                                         prompts=prompts, progress=False)
    assert report["protocol"] == "custom (prompts.txt)" and report["evaluated"] == 15
    prompts.write_text("a photo of a thing\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="must hold"):
        evaluate_box_classification(ref_model, ann, images_dir, prompts=prompts, progress=False)


# ------------------------------------------------------------------------------- sharding, resuming
def test_two_process_torchrun_equals_single_process(dataset, full_run, tmp_path):
    ann, images_dir = dataset
    report, preds_path = full_run
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(TOOL), "--ann", str(ann), "--images", str(images_dir), "--model", str(CHECKPOINT),
               "--out", str(tmp_path), "--workers", "0", "--batch-size", "2", "--quiet", "--plot"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8")) == report
    assert (tmp_path / "plot.png").is_file() and done.stdout.count("plot written to") == 1  # rank 0 draws it
    _, single = read_predictions(preds_path)
    _, sharded = read_predictions(tmp_path / "predictions.jsonl")
    assert [(r["annotation_id"], r.get("top5"), r.get("skipped")) for r in sharded] == \
           [(r["annotation_id"], r.get("top5"), r.get("skipped")) for r in single]


def _stamps(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "records").glob("*.json"))}


def _without_model(report: dict) -> dict:
    """A report without what the tool adds to the evaluation's own (the model named, the settings)."""
    return {k: v for k, v in report.items() if k not in ("model", "settings")}


def test_a_rerun_skips_recorded_images_and_redoes_cut_or_missing_records(dataset, full_run, ref_model, tmp_path):
    """The bulk tools' resume rule: an image is done when its record is whole and of this run."""
    ann, images_dir = dataset
    report, _ = full_run
    classifier = BoxClassifier(ref_model, precision="fp32")
    partial = evaluate_box_classification(classifier, ann, images_dir, out=tmp_path, max_images=2, progress=False)
    assert not partial["complete"] and partial["images_done"] == 2 and len(_stamps(tmp_path)) == 2
    resumed = evaluate_box_classification(classifier, ann, images_dir, out=tmp_path, progress=False)
    assert _without_model(resumed) == _without_model(report)
    before = _stamps(tmp_path)
    assert len(before) == 5  # the two images that cannot be read have no record (bad_files.jsonl lists them)

    # A record holding only some of its image's outcomes, and a record gone: both images are done again.
    cut = tmp_path / "records" / "1.json"
    record = json.loads(cut.read_text(encoding="utf-8"))
    assert len(record["outcomes"]) == 4  # img_1: three boxes and the zero-area one
    cut.write_text(json.dumps(dict(record, outcomes=record["outcomes"][:-1])), encoding="utf-8")
    (tmp_path / "records" / "3.json").unlink()
    again = evaluate_box_classification(classifier, ann, images_dir, out=tmp_path, progress=False)
    assert _without_model(again) == _without_model(report)
    after = _stamps(tmp_path)
    assert json.loads(cut.read_text(encoding="utf-8")) == record
    assert {name for name in after if after[name] != before.get(name)} == {"1.json", "3.json"}


def test_a_record_is_of_one_model_known_by_its_content_not_its_path(dataset, full_run, tiny_checkpoint, tmp_path):
    from fgdense import FGCLIP2Model

    ann, images_dir = dataset
    report, _ = full_run
    out = tmp_path / "out"
    moved = tmp_path / "moved"
    shutil.copytree(CHECKPOINT, moved)
    first = evaluate_box_classification(FGCLIP2Model.from_pretrained(CHECKPOINT), ann, images_dir, out=out,
                                        progress=False)
    before = _stamps(out)
    # The same files under another path: the same model, so every record stands.
    again = evaluate_box_classification(FGCLIP2Model.from_pretrained(moved), ann, images_dir, out=out, progress=False)
    assert _stamps(out) == before and again["top1_correct"] == first["top1_correct"] == report["top1_correct"]
    # Other weights at that same path: another model, every image evaluated again.
    shutil.rmtree(moved)
    shutil.copytree(tiny_checkpoint, moved)
    other = evaluate_box_classification(FGCLIP2Model.from_pretrained(moved), ann, images_dir, out=out, progress=False)
    fresh = evaluate_box_classification(FGCLIP2Model.from_pretrained(moved), ann, images_dir, progress=False)
    after = _stamps(out)
    assert all(after[name] != before[name] for name in before)
    assert other["model_fingerprint"] != first["model_fingerprint"]
    assert _without_model(other) == _without_model(fresh)
    header, _ = read_predictions(out / "predictions.jsonl")
    assert header["fgdense_boxclass_predictions"]["model"] == other["model_fingerprint"]


def test_the_run_hash_holds_the_boxes(dataset, ref_model, tmp_path):
    """Moving one box of an image (same file, same model) makes that image's record another run's."""
    ann, images_dir = dataset
    classifier = BoxClassifier(ref_model, precision="fp32")
    evaluate_box_classification(classifier, ann, images_dir, out=tmp_path, progress=False)
    before = _stamps(tmp_path)
    data = json.loads(ann.read_text(encoding="utf-8"))
    first = next(a for a in data["annotations"] if a["image_id"] == 1007)
    first["bbox"] = [first["bbox"][0] + 3, *first["bbox"][1:]]
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    report = evaluate_box_classification(classifier, moved, images_dir, out=tmp_path, progress=False)
    after = _stamps(tmp_path)
    assert {name for name in after if after[name] != before[name]} == {"1.json"}  # image 1007 is the second
    lines = read_predictions(tmp_path / "predictions.jsonl")[1]
    assert next(r for r in lines if r["annotation_id"] == first["id"])["bbox"][0] == round(first["bbox"][0], 2)
    assert report["complete"]


def test_an_annotation_file_edited_in_place_is_evaluated_again_not_resumed(tmp_path, ref_model):
    """Category names swapped in the same file: the old records are of other prompts, so the rerun redoes
    every image and reports what a fresh run reports; the predictions header names the file's content."""
    ann, images_dir = make_dataset(tmp_path / "data")
    classifier = BoxClassifier(ref_model, precision="fp32")
    out = tmp_path / "out"
    first = evaluate_box_classification(classifier, ann, images_dir, out=out, progress=False)
    before_header, _ = read_predictions(out / "predictions.jsonl")
    data = json.loads(ann.read_text(encoding="utf-8"))
    names = [c["name"] for c in data["categories"]]
    for category, name in zip(data["categories"], names[1:] + names[:1]):  # every name moves to another id
        category["name"] = name
    ann.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    before = _stamps(out)
    resumed = evaluate_box_classification(classifier, ann, images_dir, out=out, progress=False)
    fresh = evaluate_box_classification(classifier, ann, images_dir, progress=False)
    assert _without_model(resumed) == _without_model(fresh)
    assert resumed["top1_correct"] != first["top1_correct"] or resumed["per_category"] != first["per_category"]
    after = _stamps(out)
    assert all(after[name] != before[name] for name in before)  # every record redone
    header, _ = read_predictions(out / "predictions.jsonl")
    old, new = before_header["fgdense_boxclass_predictions"], header["fgdense_boxclass_predictions"]
    assert old["annotations"] == new["annotations"]  # the same path ...
    assert old["annotations_content"] != new["annotations_content"] and old["prompts"] != new["prompts"]  # ... other content


def test_fewer_categories_than_top_five(tmp_path, ref_model):
    """Three categories: top-5 lists all three, so every scored box is right within its top 5."""
    three = [(3, "猫"), (7, "dog"), (12, "Red Mug")]
    ann, images_dir = make_dataset(tmp_path, seed=2, categories=three)
    report = evaluate_box_classification(ref_model, ann, images_dir, out=tmp_path / "out", progress=False)
    assert report["evaluated"] == 15 and report["top5"] == 1.0 and report["top1"] < 1
    for line in read_predictions(tmp_path / "out" / "predictions.jsonl")[1]:
        if "skipped" not in line:
            assert sorted(line["top5"]) == [3, 7, 12]


def test_the_evaluation_measures_box_classifier(dataset, full_run, ref_model, ref_processor, ref_tokenizer):
    """The predictions are BoxClassifier's, as a user runs it: labels with the COCO protocol's templates,
    each image decoded as stored, its valid boxes; top-5 and cosines equal, line by line."""
    from fgdense.evaluation.protocols import imagenet_templates
    from fgdense.processing.image import decode_as_stored

    ann, images_dir = dataset
    _, preds_path = full_run
    data = json.loads(ann.read_text(encoding="utf-8"))
    names = [c["name"] for c in data["categories"]]
    ids = [c["id"] for c in data["categories"]]
    classifier = BoxClassifier(ref_model, ref_processor, ref_tokenizer, precision="fp32",
                               templates=imagenet_templates())
    lines = [r for r in read_predictions(preds_path)[1] if "skipped" not in r]
    files = {im["id"]: im.get("file_name") or im["coco_url"].rsplit("/", 1)[-1] for im in data["images"]}
    checked = 0
    for image_id in dict.fromkeys(r["image_id"] for r in lines):
        mine = [r for r in lines if r["image_id"] == image_id]
        image = Image.fromarray(decode_as_stored(images_dir / files[image_id]))
        result = classifier.classify(image, [r["bbox"] for r in mine], names)
        for row, line in enumerate(mine):
            assert [ids[j] for j in result.top_k[row]] == line["top5"]
            assert np.allclose(result.cosine[row, result.top_k[row]], line["scores"], atol=1e-6)
            checked += 1
    assert checked == 15


def test_unreadable_image_is_counted(tmp_path, ref_model):
    ann, images_dir = make_dataset(tmp_path, seed=1)
    (images_dir / "img_3.png").write_bytes(b"not a png")
    report = evaluate_box_classification(ref_model, ann, images_dir, progress=False)
    assert report["skipped"]["unreadable_image"] == 3  # img_3 had three boxes
    assert report["annotations"] == report["evaluated"] + report["skipped_total"]


def test_tool_user_errors_are_one_line_and_write_nothing(dataset, tmp_path):
    ann, images_dir = dataset
    out = tmp_path / "out"
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}', encoding="utf-8")
    annc = tmp_path / "annc.json"
    shutil.copy(ann, annc)
    cases = [
        (["--ann", str(tmp_path / "nope.json"), "--images", str(images_dir)], "does not exist"),
        (["--ann", str(ann), "--images", str(tmp_path / "nope")], "does not exist"),
        (["--ann", str(ann), "--images", str(images_dir), "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--ann", str(ann), "--images", str(images_dir), "--workers", "-1"], "--workers must be"),
        (["--ann", str(bad), "--images", str(images_dir)], "lacks the COCO-format"),
        (["--ann", str(ann), "--images", str(images_dir), "--protocol", "lvis", "--prompts", str(ann)], "not both"),
        (["--ann", str(ann), "--images", str(images_dir), "--device", "cuda:9"], "cuda:9"),
    ]
    for args, message in cases:
        done = run_tool(*args, "--model", str(CHECKPOINT), "--out", str(out), "--quiet")
        err = done.stderr.strip()
        assert done.returncode != 0 and message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    # The annotations as --out's report: refused, and the annotation file is untouched.
    before = annc.read_bytes()
    (tmp_path / "o2").mkdir()
    shutil.move(annc, tmp_path / "o2" / "report.json")
    done = run_tool("--ann", str(tmp_path / "o2" / "report.json"), "--images", str(images_dir), "--model",
                    str(CHECKPOINT), "--out", str(tmp_path / "o2"), "--quiet")
    assert done.returncode != 0 and "never writes over its inputs" in done.stderr
    assert (tmp_path / "o2" / "report.json").read_bytes() == before
    # The annotations as --plot's picture: refused in one line, before any work.
    shutil.copy(ann, tmp_path / "o2" / "plot.png")
    done = run_tool("--ann", str(tmp_path / "o2" / "plot.png"), "--images", str(images_dir), "--model",
                    str(CHECKPOINT), "--out", str(tmp_path / "o2"), "--plot", "--quiet")
    err = done.stderr.strip()
    assert done.returncode != 0 and "plot" in err and "is the annotation file" in err and len(err.splitlines()) == 1
    assert (tmp_path / "o2" / "plot.png").read_bytes() == ann.read_bytes()
