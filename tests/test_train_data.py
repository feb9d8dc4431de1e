"""FineHARD data: validation errors, the collator's padding and patch budget, the monolingual sampler."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fgdense import FGCLIP2ImageProcessor, load_tokenizer
from fgdense.train.data import FineHARDCollator, FineHARDDataset, FineHARDError, MonolingualBatchSampler
from _train_helpers import make_world, run_tool


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), num_train=10, seed=1)["finehard"]


@pytest.fixture(scope="module")
def collator(tiny_checkpoint):
    return FineHARDCollator(load_tokenizer(tiny_checkpoint), FGCLIP2ImageProcessor.from_pretrained(tiny_checkpoint))


def record(**changes):
    box = {"bbox": [0.1, 0.1, 0.5, 0.5], "short_expr": "red mug", "long_expr": "a red mug", "flag_short_neg": 1,
           "short_expr_negs": [f"neg {i}" for i in range(10)]}
    base = {"f_path": "a.png", "caption": "a long caption", "short_caption": "short", "bbox_info": [box, dict(box)]}
    base.update(changes)
    return base


def write(path, records):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    return path


def test_reads_json_and_jsonl_folder(data):
    english = Path(data["ann_file"], "en.jsonl").read_text(encoding="utf-8").splitlines()
    chinese = json.loads(Path(data["ann_file"], "cn.json").read_text(encoding="utf-8"))
    assert len(english) == len(chinese) >= 9  # one record per training image with a shape, each language
    ds = FineHARDDataset(data["ann_file"], data["image_root"], data["image_root_cn"], progress=False)
    assert len(ds) == 2 * len(english) and int(ds.is_cn.sum()) == len(chinese)
    item = ds[0]
    assert item["image"].mode == "RGB" and len(item["record"].hard_texts[0]) == 11


@pytest.mark.parametrize("box,problem", [
    ({"bbox": [0.5, 0.1, 0.2, 0.4]}, "inverted"),
    ({"bbox": [10, 20, 200, 300]}, "not normalised"),
    ({"bbox": [0.1, 0.1, 0.4]}, "4 numbers"),
    ({"bbox": [0.1, float("nan"), 0.4, 0.5]}, "non-finite"),
    ({"short_expr_negs": ["only", "three", "negatives"]}, "short_expr_negs"),
])
def test_invalid_box_names_file_record_and_box(tmp_path, box, problem):
    bad = record()
    bad["bbox_info"][1] = {**bad["bbox_info"][1], **box}
    path = write(tmp_path / "ann.jsonl", [record(), record(), record(), bad])
    with pytest.raises(FineHARDError) as err:
        FineHARDDataset(path, tmp_path, progress=False)
    message = str(err.value)
    assert str(path) in message and "record 3 box 1" in message and problem in message


def test_missing_field_and_missing_file(tmp_path):
    path = write(tmp_path / "ann.jsonl", [record(caption="")])
    with pytest.raises(FineHARDError, match="record 0: missing or empty 'caption'"):
        FineHARDDataset(path, tmp_path, progress=False)
    with pytest.raises(FineHARDError, match="does not exist"):
        FineHARDDataset(tmp_path / "nope.json", tmp_path, progress=False)


def test_image_root_that_is_not_a_folder(tmp_path):
    """A wrong image root must not quietly skip every image and train on nothing."""
    path = write(tmp_path / "ann.jsonl", [record(), record(caption="一只红色的杯子")])
    with pytest.raises(FineHARDError, match="image root for the Chinese records .*cn-missing is not a folder"):
        FineHARDDataset(path, tmp_path, tmp_path / "cn-missing", progress=False)
    FineHARDDataset(write(tmp_path / "en.jsonl", [record()]), tmp_path, tmp_path / "cn-missing", progress=False)


def test_language_from_flag_or_text(tmp_path):
    path = write(tmp_path / "ann.jsonl", [record(), record(caption="一只红色的杯子"), record(is_cn=False, caption="猫")])
    (tmp_path / "en").mkdir()
    (tmp_path / "cn").mkdir()
    ds = FineHARDDataset(path, tmp_path / "en", tmp_path / "cn", progress=False)
    assert ds.is_cn.tolist() == [False, True, False]
    assert ds.records[1].image_path == tmp_path / "cn" / "a.png"


def test_collator_pads_boxes_and_counts_skipped(tmp_path, collator):
    Image.new("RGB", (96, 80), (200, 10, 10)).save(tmp_path / "a.png")
    one_box = record()
    one_box["bbox_info"] = one_box["bbox_info"][:1]
    no_neg = record()
    no_neg["bbox_info"][0]["flag_short_neg"] = 0
    path = write(tmp_path / "ann.jsonl", [record(), one_box, no_neg, record(f_path="missing.png")])
    ds = FineHARDDataset(path, tmp_path, progress=False)
    batch = collator([ds[(i, 3)] for i in range(4)])
    assert batch["skipped"] == 1 and batch["size"] == 3 and batch["epoch"] == 3
    assert batch["box_counts"].tolist() == [2, 1, 2] and batch["boxes"].shape == (3, 2, 4)
    assert batch["hard_counts"].tolist() == [2, 1, 1] and batch["hard_ids"].shape == (3, 2, 11, 64)
    assert batch["long_ids"].shape == (3, 196) and batch["short_ids"].shape == (3, 64)
    assert batch["box_ids"].shape == (3, 2, 64)
    # Padding slots are empty, real slots are not.
    assert (batch["boxes"][1, 1] == 0).all() and (batch["box_ids"][1, 1] == 0).all() and batch["box_ids"][1, 0].any()
    np.testing.assert_allclose(batch["boxes"][0, 0].numpy(), [0.1, 0.1, 0.5, 0.5], rtol=1e-6)


def test_patch_budget_is_chosen_per_batch(tmp_path, collator):
    Image.new("RGB", (96, 80)).save(tmp_path / "small.png")
    Image.new("RGB", (480, 480)).save(tmp_path / "big.png")  # 900 native patches -> the 1024 bucket
    path = write(tmp_path / "ann.jsonl", [record(f_path="small.png"), record(f_path="big.png")])
    ds = FineHARDDataset(path, tmp_path, progress=False)
    assert collator([ds[0], ds[0]])["pixel_values"].shape[1] == 128
    assert collator([ds[0], ds[1]])["pixel_values"].shape[1] == 1024


def sampler_for(is_cn, batch_size, rank=0, world_size=1, epoch=0):
    dataset = SimpleNamespace(is_cn=np.asarray(is_cn))
    inner = SimpleNamespace(dataset=dataset, seed=5, shuffle=True, rank=rank, world_size=world_size, epoch=epoch)
    return MonolingualBatchSampler(inner, batch_size)


def test_sampler_batches_are_monolingual_and_cover_everything():
    is_cn = np.array([True] * 11 + [False] * 18)
    sampler = sampler_for(is_cn, 4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 5
    for batch in batches:
        assert len(batch) == 4 and len({bool(is_cn[i]) for i, _ in batch}) == 1
    assert {i for b in batches for i, _ in b} == set(range(29))
    other_epoch = [[i for i, _ in b] for b in sampler_for(is_cn, 4, epoch=1)]
    assert other_epoch != [[i for i, _ in b] for b in batches]


def test_sampler_ranks_share_language_per_step_and_split_data():
    is_cn = np.array([True] * 9 + [False] * 14)
    per_rank = [list(sampler_for(is_cn, 3, rank=r, world_size=2)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1])
    for b0, b1 in zip(*per_rank):
        assert len({bool(is_cn[i]) for i, _ in b0 + b1}) == 1
    seen = [i for batches in per_rank for b in batches for i, _ in b]
    assert set(seen) == set(range(23))


def test_tool_reports_bad_data_in_one_line_and_writes_nothing(tmp_path, tiny_checkpoint):
    from _train_helpers import TINY_CONFIG

    bad = record()
    bad["bbox_info"][0]["bbox"] = [0.5, 0.5, 0.2, 0.9]
    ann = write(tmp_path / "ann.jsonl", [record(), bad])
    work = tmp_path / "work"
    code, err = run_tool([str(TINY_CONFIG), "--work-dir", str(work), "--cfg-options", f"checkpoint={tiny_checkpoint}",
                          f"ann_file={ann}", f"image_root={tmp_path}"])
    assert code == 1 and err.strip().splitlines()[-1] == (
        f"error: {ann} record 1 box 0: 'bbox' [0.5, 0.5, 0.2, 0.9] is inverted or has zero area")
    assert not work.exists()
    code, err = run_tool([str(TINY_CONFIG), "--work-dir", str(work), "--cfg-options", f"checkpoint={tiny_checkpoint}",
                          f"ann_file={ann}", "model.frozen=[text_tower.]"])
    assert code == 1 and "frozen prefix 'text_tower.'" in err and not work.exists()
    code, err = run_tool([str(TINY_CONFIG), "--work-dir", str(work), "--cfg-options",
                          f"checkpoint={tmp_path / 'no-such-checkpoint'}"])
    assert code == 1 and "does not exist" in err and not work.exists()


def test_infinite_sampler_runs_pass_after_pass():
    is_cn = np.array([True] * 5 + [False] * 6)
    sampler = sampler_for(is_cn, 3, epoch=0)
    sampler.infinite = True
    stream = iter(sampler)
    batches = [next(stream) for _ in range(3 * len(sampler))]
    epochs = [b[0][1] for b in batches]
    assert epochs == [0] * len(sampler) + [1] * len(sampler) + [2] * len(sampler)
    finite = [[i for i, _ in b] for b in sampler_for(is_cn, 3, epoch=1)]
    assert [[i for i, _ in b] for b in batches[len(sampler):2 * len(sampler)]] == finite
