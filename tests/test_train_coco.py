"""COCO / LVIS-format training data: samples from category names, skips counted, bad files in one line,
masks on the patch grid, and mixing with FineHARD data."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from _train_helpers import COCO_TINY_CONFIG, make_world, run_tool
from fgdense import FGCLIP2ImageProcessor, load_tokenizer, tokenize
from fgdense.train.coco import SKIP_REASONS, CocoFormatError, CocoRegionDataset
from fgdense.train.data import FineHARDCollator, FineHARDDataset, MonolingualBatchSampler, mask_on_grid, text_key
from fgdense.train.mixed import MixedDataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), num_train=12, num_val=4, seed=3)


@pytest.fixture(scope="module")
def collator(tiny_checkpoint):
    return FineHARDCollator(load_tokenizer(tiny_checkpoint), FGCLIP2ImageProcessor.from_pretrained(tiny_checkpoint))


def coco_file(path: Path, images, annotations, categories=None):
    categories = categories or [{"id": 3, "name": "dog"}, {"id": 7, "name": "traffic_light"}, {"id": 9, "name": "cat"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_samples_name_categories(world):
    data = json.loads(Path(world["train_ann"]).read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    ds = CocoRegionDataset(world["train_ann"], world["train_images"], num_negatives=10, progress=False)
    assert len(ds) == len(ds.images) == len({a["image_id"] for a in data["annotations"]})
    assert ds.report["annotations_used"] == len(data["annotations"]) and not any(ds.report["skipped"].values())
    item = ds[(0, 0)]
    record = item["record"]
    assert item["image"].size == (ds.images[0].width, ds.images[0].height) and not record.is_cn
    truth = [names[c] for c in ds.images[0].categories]
    assert record.box_texts == truth and record.box_keys == truth
    for hard, positive in zip(record.hard_texts, truth):
        # The positive first, then 10 names of other categories (11 others exist: no repeats).
        assert hard[0] == positive and len(hard) == 11 and positive not in hard[1:] and len(set(hard[1:])) == 10
        assert set(hard[1:]) <= set(names.values())
    for name in set(truth):
        assert f"{truth.count(name)} {name}" in record.caption and name in record.short_caption
    # Boxes: normalised xyxy of the file's xywh boxes.
    first = next(a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"])
    x, y, w, h = first["bbox"]
    width, height = data["images"][0]["width"], data["images"][0]["height"]
    np.testing.assert_allclose(record.boxes[0], [x / width, y / height, (x + w) / width, (y + h) / height], rtol=1e-5)


def test_texts_are_fresh_each_pass_and_repeatable(world):
    ds = CocoRegionDataset(world["train_ann"], world["train_images"], names_file=world["names_file"],
                           languages=["en", "zh"], templates=["{}", "a photo of a {}"], synonym_prob=0.5,
                           progress=False)
    assert len(ds) == 2 * len(ds.images) and ds.is_cn.tolist() == [False, True] * len(ds.images)
    english, chinese = ds.record(0, 0), ds.record(1, 0)
    assert chinese.is_cn and all("色" in key for key in chinese.box_keys)  # 红色圆形 ...
    assert english.box_keys == [k.lower() for k in english.box_keys] and not any("色" in k for k in english.box_keys)
    passes = [[t for i in range(len(ds)) for t in ds.record(i, epoch).box_texts + sum(ds.record(i, epoch).hard_texts, [])]
              for epoch in range(3)]
    assert passes[0] != passes[1] != passes[2]
    assert passes[1] == [t for i in range(len(ds)) for t in ds.record(i, 1).box_texts + sum(ds.record(i, 1).hard_texts, [])]
    texts = set(sum(passes, []))
    assert any(t.startswith("a photo of a ") for t in texts) and any(" disc" in t or " block" in t for t in texts)


def test_names_file_and_lvis_names(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    ann = coco_file(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                    [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 20, 20]}])
    ds = CocoRegionDataset(ann, tmp_path, num_negatives=2, progress=False)
    assert ds.record(0).box_texts == ["traffic light"]
    names = tmp_path / "names.json"
    names.write_text(json.dumps([{"id": 7, "name": "signal", "synonyms": ["stop light"], "name_zh": "红绿灯"},
                                 {"id": 99, "name": "unused"}], ensure_ascii=False), encoding="utf-8")
    ds = CocoRegionDataset(ann, tmp_path, names_file=names, languages=["zh", "en"], num_negatives=2,
                           synonym_prob=1.0, progress=False)
    assert ds.record(0).box_texts == ["红绿灯"] and ds.record(1).box_texts == ["stop light"]
    assert ds.record(1).box_keys == ["signal"]
    # Categories without a Chinese name fall back to English, and are counted.
    assert ds.report["categories_without_chinese_name"] == 2 and ds.report["names_file_unknown_ids"] == 1


def test_skips_are_counted_by_reason(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (100, 80)).save(tmp_path / name)
    images = [{"id": 1, "file_name": "a.png", "width": 100, "height": 80},
              {"id": 2, "file_name": "b.png", "width": 100, "height": 80},
              {"id": 3, "file_name": "missing.png", "width": 100, "height": 80},
              {"id": 4, "file_name": "c.png"}]  # no size: read from the file
    good = {"image_id": 1, "category_id": 3, "bbox": [10, 10, 30, 20]}
    annotations = [good, dict(good, iscrowd=1), dict(good, bbox=[10, 10, 2, 30]),  # crowd, tiny
                   dict(good, bbox=[10, 10, 0, 30]), dict(good, bbox=[200, 200, 20, 20]),  # empty, outside
                   dict(good, category_id=42), dict(good, image_id=77), {"image_id": 1, "bbox": [1, 1, 5, 5]},
                   dict(good, bbox="nope"),  # malformed
                   dict(good, image_id=2, bbox=[1, 1, 1, 1]),  # b.png: its only box is tiny
                   dict(good, image_id=3),  # image missing on disk
                   dict(good, image_id=4, bbox=[50, 40, 200, 200])]  # clipped to c.png's 100x80
    ann = coco_file(tmp_path / "ann.json", images, annotations)
    ds = CocoRegionDataset(ann, tmp_path, min_box_size=4, num_negatives=1, progress=False)
    assert ds.report["skipped"] == {"crowd": 1, "tiny": 2, "degenerate": 2, "unknown_category": 1, "unknown_image": 1,
                                    "malformed": 2, "outside_image_root": 0, "missing_image": 1, "no_usable_box": 1}
    assert ds.report["annotations_used"] == 2 and ds.report["images_used"] == 2
    np.testing.assert_allclose(ds.images[1].boxes[0], [0.5, 0.5, 1.0, 1.0])
    summary = ds.summary()
    assert "2 boxes of 2 images" in summary and "crowd 1" in summary and "missing_image 1" in summary
    assert set(ds.report["skipped"]) == set(SKIP_REASONS)


@pytest.mark.parametrize("content,problem", [
    ("not json", "is not readable JSON"),
    (json.dumps({"images": [], "categories": []}), "lacks the COCO-format list(s) 'annotations'"),
    (json.dumps({"images": [], "annotations": [], "categories": [{"id": 1}]}), "category 0 needs an 'id' and a non-empty 'name'"),
    (json.dumps({"images": [{"file_name": "a.png"}], "annotations": [], "categories": [{"id": 1, "name": "x"}]}),
     "image entry 0 has no 'id'"),
    (json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [], "categories": [{"id": 1, "name": "x"}]}),
     "no image with a usable box"),
])
def test_bad_files_fail_in_one_line(tmp_path, content, problem):
    (tmp_path / "ann.json").write_text(content)
    with pytest.raises(CocoFormatError, match=problem.replace("(", r"\(").replace(")", r"\)")) as err:
        CocoRegionDataset(tmp_path / "ann.json", tmp_path, progress=False)
    assert "\n" not in str(err.value) and "ann.json" in str(err.value)


def test_bad_settings_fail_in_one_line(world, tmp_path):
    args = (world["train_ann"], world["train_images"])
    for kwargs, problem in ((dict(languages=["zh"]), "no category has a Chinese name"),
                            (dict(languages=["fr"]), "languages must be"),
                            (dict(templates=["a photo"]), "must hold '{}' exactly once"),
                            (dict(negatives="confused"), "needs the starting checkpoint"),
                            (dict(names_file=tmp_path / "none.json"), "names file .* does not exist")):
        with pytest.raises(CocoFormatError, match=problem):
            CocoRegionDataset(*args, progress=False, **kwargs)
    with pytest.raises(CocoFormatError, match="image root .* is not a folder"):
        CocoRegionDataset(world["train_ann"], tmp_path / "nowhere", progress=False)


def test_confused_negatives_come_from_the_models_confusions(world, tiny_checkpoint):
    ds = CocoRegionDataset(world["train_ann"], world["train_images"], negatives="confused", checkpoint=tiny_checkpoint,
                           num_negatives=4, confusion_pool=2, progress=False)
    assert set(ds.confused) == set(ds.categories) and all(len(v) == 2 and c not in v for c, v in ds.confused.items())
    names = {c: n.name for c, n in ds.categories.items()}
    for index in range(len(ds)):
        record, image = ds.record(index, 0), ds.images[index]
        for category, hard in zip(image.categories, record.hard_texts):
            pool = {names[c] for c in ds.confused[category]}
            # Half of the 4 negatives (2) are the 2 most confused categories, the rest other ones.
            assert pool <= set(hard[1:]) and len(set(hard[1:])) == 4


def test_mask_on_grid_covers_the_right_cells():
    # A 40x20 image, polygon square over x in [10, 30), y in [0, 10): on a 2x4 grid (10x10 pixel
    # cells) that is cells (0, 1) and (0, 2) fully.
    square = [[10, 0, 30, 0, 30, 10, 10, 10]]
    grid = mask_on_grid(square, (40, 20), (2, 4))
    np.testing.assert_allclose(grid, [[0, 1, 1, 0], [0, 0, 0, 0]], atol=0.07)
    from pycocotools import mask as mask_utils

    full = np.zeros((20, 40), np.uint8, order="F")
    full[10:20, 0:5] = 1  # half of cell (1, 0)
    rle = mask_utils.encode(np.asfortranarray(full))
    rle["counts"] = rle["counts"].decode()
    np.testing.assert_allclose(mask_on_grid(rle, (40, 20), (2, 4)), [[0, 0, 0, 0], [0.5, 0, 0, 0]], atol=1e-6)


def test_collator_keys_and_masks(world, collator):
    ds = CocoRegionDataset(world["train_ann"], world["train_images"], num_negatives=10, masks=True, progress=False)
    items = [ds[(i, 0)] for i in range(4)]
    batch = collator(items)
    records = [it["record"] for it in items]
    counts = batch["box_counts"].tolist()
    assert counts == [len(r.boxes) for r in records]
    for i, record in enumerate(records):
        assert batch["box_keys"][i, : counts[i]].tolist() == [text_key(k) for k in record.box_keys]
        assert (batch["box_keys"][i, counts[i]:] == -1).all()
        assert batch["hard_keys"][i, 0].tolist() == [text_key(k) for k in record.hard_keys[0]]
        h, w = batch["spatial_shapes"][i].tolist()
        for j in range(counts[i]):
            assert batch["box_has_mask"][i, j]
            mask = batch["box_masks"][i, j]
            assert mask[:h, :w].sum() > 0 and mask[h:].sum() == 0 and mask[:, w:].sum() == 0
            # The mask lies inside its box, on the grid.
            x1, y1, x2, y2 = (record.boxes[j] * [w, h, w, h]).tolist()
            ys, xs = np.nonzero(mask.numpy() > 0.01)
            assert xs.min() >= int(x1) - 1 and xs.max() <= int(np.ceil(x2)) and ys.min() >= int(y1) - 1 and ys.max() <= int(np.ceil(y2))
    assert batch["long_keys"].tolist() == [text_key(r.caption) for r in records]
    # Token ids: remembered texts give the ids tokenising them afresh gives.
    again = collator(items)
    for i, record in enumerate(records):
        fresh = tokenize(collator.tokenizer, sum(record.hard_texts, []), "box")["input_ids"].reshape(counts[i], 11, 64)
        assert torch.equal(batch["hard_ids"][i, : counts[i]], fresh) and torch.equal(again["hard_ids"][i, : counts[i]], fresh)
        assert torch.equal(again["box_ids"][i, : counts[i]], tokenize(collator.tokenizer, record.box_texts, "box")["input_ids"])


def test_text_mask_tokenizer_trains_on_the_text_evaluation_feeds(world, tiny_checkpoint):
    """text_mask="tokenizer": every text reaches the tower with the tokenizer's mask, and the embeddings
    training scores against are the evaluation's (encode_text); "none" (the official training) gives ids only."""
    from fgdense import FGCLIP2Model
    from fgdense.prompts import encode_text
    from fgdense.train.model import FGCLIP2Stage2

    tokenizer, processor = load_tokenizer(tiny_checkpoint), FGCLIP2ImageProcessor.from_pretrained(tiny_checkpoint)
    ds = CocoRegionDataset(world["train_ann"], world["train_images"], num_negatives=10, templates="imagenet",
                           progress=False)
    items = [ds[(i, 0)] for i in range(3)]
    plain = FineHARDCollator(tokenizer, processor)(items)
    masked = FineHARDCollator(tokenizer, processor, text_mask="tokenizer")(items)
    assert not {"long_mask", "short_mask", "box_mask", "hard_mask"} & set(plain)
    counts = masked["box_counts"].tolist()
    model = FGCLIP2Stage2(network=FGCLIP2Model.from_pretrained(tiny_checkpoint),
                          frozen=["text_model.", "boxtext_head.", "longtext_head."]).eval()
    for i, item in enumerate(items):
        record = item["record"]
        assert all(any(t.format(name) == text for t in ds.templates["en"]) for name, text in
                   zip(record.box_keys, record.box_texts))  # the evaluation's templates
        wanted = tokenize(tokenizer, record.box_texts, "box")
        assert torch.equal(masked["box_mask"][i, : counts[i]], wanted["attention_mask"])
        assert torch.equal(masked["box_ids"][i, : counts[i]], plain["box_ids"][i, : counts[i]])
        hard = tokenize(tokenizer, sum(record.hard_texts, []), "box")["attention_mask"].reshape(counts[i], 11, 64)
        assert torch.equal(masked["hard_mask"][i, : counts[i]], hard)
        with torch.no_grad():
            trained = model.text_features(masked["box_ids"][i, : counts[i]], "box", masked["box_mask"][i, : counts[i]])
            ids_only = model.text_features(plain["box_ids"][i, : counts[i]], "box")
        evaluated = encode_text(model.model, tokenizer, record.box_texts, "box")
        torch.testing.assert_close(trained, evaluated, atol=1e-5, rtol=1e-5)
        assert (trained - ids_only).abs().max() > 1e-3  # the mask changes the embedding: the test can tell
    captions = [it["record"].caption for it in items]
    assert torch.equal(masked["long_mask"], tokenize(tokenizer, captions, "long")["attention_mask"])
    with pytest.raises(Exception, match="text_mask"):
        FineHARDCollator(tokenizer, processor, text_mask="sometimes")


def test_a_trained_head_over_a_frozen_tower_gives_the_tasks_embeddings_and_learns(tiny_checkpoint):
    """Only the box head trains (coco_tiny): the tower's outputs are remembered, the embeddings are still
    exactly what the tasks compute, and gradients reach the head and nothing of the tower."""
    from fgdense import FGCLIP2Model
    from fgdense.prompts import encode_text
    from fgdense.train.model import FGCLIP2Stage2

    tokenizer = load_tokenizer(tiny_checkpoint)
    model = FGCLIP2Stage2(network=FGCLIP2Model.from_pretrained(tiny_checkpoint),
                          frozen=["text_model.", "longtext_head."])
    texts = ["red circle", "a photo of a red circle.", "red circle"]
    inputs = tokenize(tokenizer, texts, "box")
    for _ in range(2):  # computed, then remembered
        features = model.text_features(inputs["input_ids"], "box", inputs["attention_mask"])
        torch.testing.assert_close(features.detach(), encode_text(model.model, tokenizer, texts, "box"),
                                   atol=1e-5, rtol=1e-5)
    assert sum(1 for key in model._text_cache if key[0] == ("tower", "box")) == 2
    features.sum().backward()
    assert model.model.boxtext_head.weight.grad is not None and model.model.boxtext_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.model.text_model.parameters())


def test_bare_prob_mixes_bare_names_into_the_templates(world):
    from fgdense.prompts import imagenet_templates

    def texts(**settings):
        ds = CocoRegionDataset(world["train_ann"], world["train_images"], num_negatives=3, templates="imagenet",
                               progress=False, **settings)
        records = [ds[(i, epoch)]["record"] for i in range(len(ds)) for epoch in range(3)]
        names = [c.name for c in ds.categories.values()]
        for r in records:  # negatives wear the positive's template
            for hard, key in zip(r.hard_texts, r.box_keys):
                template = next(t for t in ("{}", *imagenet_templates()) if t.format(key) == hard[0])
                assert all(any(template.format(n) == h for n in names) for h in hard[1:])
        return [t == k for r in records for t, k in zip(r.box_texts, r.box_keys)]

    assert not any(texts())
    assert all(texts(bare_prob=1.0))
    mixed = texts(bare_prob=0.5)
    assert 0.3 < sum(mixed) / len(mixed) < 0.7
    with pytest.raises(CocoFormatError, match="bare_prob"):
        CocoRegionDataset(world["train_ann"], world["train_images"], bare_prob=1.5, progress=False)


def test_mixed_dataset_shares_and_batches(world, collator):
    finehard = FineHARDDataset(world["finehard"]["ann_file"], world["finehard"]["image_root"],
                               world["finehard"]["image_root_cn"], progress=False)
    coco = CocoRegionDataset(world["train_ann"], world["train_images"], progress=False)
    mixed = MixedDataset([finehard, coco], weights=[1, 3])
    assert len(mixed) == len(finehard) + len(coco)
    share = mixed.share()
    assert share.sum() == len(mixed) and share[1] == round(0.75 * len(mixed))
    indices = mixed.pass_indices(0)
    from_coco = indices >= len(finehard)
    assert from_coco.sum() == share[1] and (~from_coco).sum() == share[0]
    assert not np.array_equal(indices, mixed.pass_indices(1))
    # COCO items are repeated (their share is larger than the dataset), every one of them at least once.
    assert set(indices[from_coco]) == set(range(len(finehard), len(mixed)))
    sampler = MonolingualBatchSampler(SimpleNamespace(dataset=mixed, seed=0, shuffle=True, rank=0, world_size=1, epoch=0), 4)
    batches = list(sampler)
    assert {i for b in batches for i, _ in b} == set(indices.tolist()) and len(batches) == len(sampler)
    for b in batches:
        assert len({bool(mixed.is_cn[i]) for i, _ in b}) == 1
    # FineHARD and COCO-format items in one batch.
    first_fh = next(i for i in range(len(finehard)) if not finehard.is_cn[i])
    batch = collator([mixed[(first_fh, 0)], mixed[(len(finehard), 0)]])
    assert batch["size"] == 2 and batch["hard_ids"].shape[2] == 11
    with pytest.raises(Exception, match="weights must be"):
        MixedDataset([finehard, coco], weights=[1])


def test_flips_move_boxes_and_masks_with_the_image(tmp_path, collator):
    # A 60x40 image with a white box at x 5..20, y 4..14 and a matching polygon mask.
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[4:14, 5:20] = 255
    Image.fromarray(pixels).save(tmp_path / "a.png")
    poly = [[5, 4, 20, 4, 20, 14, 5, 14]]
    ann = coco_file(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}],
                    [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 4, 15, 10], "segmentation": poly}])
    ds = CocoRegionDataset(ann, tmp_path, num_negatives=1, masks=True, hflip_prob=0.5, vflip_prob=0.5, progress=False)
    seen = set()
    for epoch in range(12):
        item = ds[(0, epoch)]
        image, record = np.asarray(item["image"]), item["record"]
        x1, y1, x2, y2 = (record.boxes[0] * [60, 40, 60, 40]).round().astype(int)
        # The box still frames the white pixels, wherever the flips put them.
        assert image[y1:y2, x1:x2].min() == 255 and image.sum() == pixels.sum()
        seen.add((int(x1), int(y1)))
        grid = mask_on_grid(record.masks[0], (60, 40), (4, 6))  # 10x10 pixel cells
        # The mask moved with the box: its area (in cells) and its centre (in cell units) agree.
        ys, xs = np.mgrid[0:4, 0:6] + 0.5
        assert grid.sum() == pytest.approx(1.5, abs=0.1)
        assert (grid * xs).sum() / grid.sum() == pytest.approx((x1 + x2) / 20, abs=0.15)
        assert (grid * ys).sum() / grid.sum() == pytest.approx((y1 + y2) / 20, abs=0.15)
    assert seen == {(5, 4), (40, 4), (5, 26), (40, 26)}  # all four mirrorings happened


def test_crops_keep_boxes_and_masks_on_their_objects(tmp_path):
    # A 100x80 image with two white squares (ids 1 and 2); crops keep a box only when 60 % of it shows.
    pixels = np.zeros((80, 100, 3), np.uint8)
    squares = {1: (10, 10, 30, 30), 2: (60, 40, 90, 70)}
    for x1, y1, x2, y2 in squares.values():
        pixels[y1:y2, x1:x2] = 255
    Image.fromarray(pixels).save(tmp_path / "a.png")
    anns = [{"id": k, "image_id": 1, "category_id": 3 if k == 1 else 9, "bbox": [x1, y1, x2 - x1, y2 - y1],
             "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]} for k, (x1, y1, x2, y2) in squares.items()]
    ann = coco_file(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}], anns)
    ds = CocoRegionDataset(ann, tmp_path, num_negatives=1, masks=True, crop_prob=1.0, crop_scale=(0.3, 0.6),
                           hflip_prob=0.5, progress=False)
    sizes, kept_counts = set(), []
    for epoch in range(20):
        item = ds[(0, epoch)]
        image, record = np.asarray(item["image"]), item["record"]
        height, width = image.shape[:2]
        assert record.image_size == (width, height) and width * height <= 0.6 * 8000 + 200
        sizes.add((width, height))
        kept_counts.append(len(record.boxes))
        for box, text, mask in zip(record.boxes, record.box_texts, record.masks):
            x1, y1, x2, y2 = (box * [width, height, width, height]).round().astype(int)
            inside = image[y1:y2, x1:x2]
            assert inside.size and inside.min() == 255  # the clipped box lies on its square
            visible = (x2 - x1) * (y2 - y1)
            full = {"dog": 400, "cat": 900}[text]
            assert visible >= 0.6 * full - 40
            grid = mask_on_grid(mask, (width, height), (height // 5, width // 5))  # 5x5 pixel cells
            assert grid.sum() * 25 == pytest.approx(visible, rel=0.15)
        # Captions name only what the crop kept.
        assert sorted(record.short_caption.split(", ")) == sorted(set(record.box_texts))
    assert len(sizes) > 5 and 1 in kept_counts and max(kept_counts) <= 2


def test_rle_masks_flip_and_crop_like_polygons():
    from pycocotools import mask as mask_utils

    from fgdense.train.coco import crop_segmentation, flip_segmentation

    polygon = [[10, 4, 30, 4, 30, 20, 10, 20]]
    full = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, 40, 60)))
    rle = mask_utils.encode(np.asfortranarray(full))
    for segmentation in (polygon, rle):
        for axis in (0, 1):
            flipped = mask_on_grid(flip_segmentation(segmentation, (60, 40), axis), (60, 40), (8, 12))
            expected = mask_on_grid(polygon, (60, 40), (8, 12))
            np.testing.assert_allclose(flipped, expected[:, ::-1] if axis == 0 else expected[::-1], atol=0.07)
        cropped = mask_on_grid(crop_segmentation(segmentation, (60, 40), (5, 0, 45, 40)), (40, 40), (8, 8))
        np.testing.assert_allclose(cropped, mask_on_grid(polygon, (60, 40), (8, 12))[:, 1:9], atol=0.07)


def test_the_tool_trains_on_a_coco_file_and_reports_bad_ones_in_one_line(world, tiny_checkpoint, tmp_path):
    work = tmp_path / "work"
    base = [str(COCO_TINY_CONFIG), "--cfg-options", f"checkpoint={tiny_checkpoint}"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    code, err = run_tool(base + [f"ann_file={bad}", f"image_root={world['train_images']}", f"work_dir={work}"])
    assert code == 1 and err.strip().splitlines()[-1] == (
        f"error: annotation file {bad} lacks the COCO-format list(s) 'categories'") and not work.exists()
    code, err = run_tool(base + [f"ann_file={world['train_ann']}", f"image_root={tmp_path / 'nowhere'}", f"work_dir={work}"])
    assert code == 1 and "is not a folder" in err.strip().splitlines()[-1] and not work.exists()
    # The documented command, with every other setting from the config.
    code, err = run_tool(base + [f"ann_file={world['train_ann']}", f"image_root={world['train_images']}",
                                 f"work_dir={work}", "max_iters=2"])
    assert code == 0, err[-2000:]
    assert (work / "export" / "model.safetensors").is_file() and (work / "iter_2.pth").is_file()
    log = "\n".join(p.read_text() for p in work.glob("*/*.log"))
    assert "training data: " in log and "skipped: nothing" in log
    # A checkpoint cut short (a crash while saving): --resume says which file, in one line, and changes nothing.
    saved = work / "iter_2.pth"
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    before = sorted(p.name for p in work.iterdir())
    code, err = run_tool([str(COCO_TINY_CONFIG), "--resume"] + base[1:] + [
        f"ann_file={world['train_ann']}", f"image_root={world['train_images']}", f"work_dir={work}", "max_iters=4"])
    lines = err.strip().splitlines()
    assert code == 1 and lines[-1].startswith(f"error: cannot resume: the latest checkpoint {saved}") and \
        "Traceback" not in err and sorted(p.name for p in work.iterdir()) == before


def test_coco_config_needs_its_files(tiny_checkpoint, tmp_path):
    code, err = run_tool([str(COCO_TINY_CONFIG), "--cfg-options", f"checkpoint={tiny_checkpoint}", "ann_file=None",
                          f"work_dir={tmp_path / 'w'}"])
    assert code == 1 and err.strip().splitlines()[-1] == "error: the config names no ann_file: set ann_file=<path>"
