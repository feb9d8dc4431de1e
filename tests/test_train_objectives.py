"""Stage-2 objectives that must do their job, not merely lower the total loss.

* training's region pooling equals the model's own ``get_image_region_features`` on the same boxes
  (a box projected onto the wrong grid axes, or scaled by the wrong side, fails it);
* a short COCO-format run lifts held-out box-classification top-1 far above chance, and opens a margin
  between a region's own category name and the other names that a run with the region objectives
  switched off (the global captions alone) does not open;
* each region objective's own loss falls, not just the total (see also test_train_smoke.py).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from _train_helpers import logged_scalars, make_coco_config, make_world, train
from fgdense import FGCLIP2ImageProcessor, FGCLIP2Model, encode_text, load_tokenizer
from fgdense.model.boxes import roi_embeddings
from fgdense.model.modeling import grid_of
from fgdense.train.coco import CocoRegionDataset
from fgdense.train.data import FineHARDCollator
from fgdense.train.model import FGCLIP2Stage2

REGION_OBJECTIVES_OFF = {"model.loss_weights.region": 0.0, "model.loss_weights.hard": 0.0,
                         "model.loss_weights.text_intra": 0.0, "model.loss_weights.mask": 0.0,
                         "model.loss_weights.dense": 0.0}  # the COCO configs train patches from masks too


def test_training_pools_regions_like_the_model(tmp_path, tiny_checkpoint):
    """Same pixels, same boxes: training's RoIAlign embeddings equal the public inference method's."""
    import json

    rng = np.random.default_rng(0)
    # Wide and tall images (grids far from square) with boxes off the diagonal.
    sizes = [(160, 48), (40, 120)]
    boxes = [[[4, 2, 60, 30], [100, 10, 150, 46]], [[2, 70, 30, 118], [20, 5, 38, 40]]]
    images, annotations = [], []
    for i, ((w, h), image_boxes) in enumerate(zip(sizes, boxes)):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        for x1, y1, x2, y2 in image_boxes:
            annotations.append({"id": len(annotations), "image_id": i, "category_id": 1 + len(annotations) % 2,
                                "bbox": [x1, y1, x2 - x1, y2 - y1]})
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]}))
    dataset = CocoRegionDataset(tmp_path / "ann.json", tmp_path, num_negatives=1, progress=False)
    collate = FineHARDCollator(load_tokenizer(tiny_checkpoint), FGCLIP2ImageProcessor.from_pretrained(tiny_checkpoint), 1)
    batch = collate([dataset[(i, 0)] for i in range(2)])
    shapes = batch["spatial_shapes"].tolist()
    assert shapes[0][1] > 2 * shapes[0][0] and shapes[1][0] > 2 * shapes[1][1]

    stage2 = FGCLIP2Stage2(str(tiny_checkpoint)).eval()
    net = stage2.model
    inputs = {k: batch[k] for k in ("pixel_values", "pixel_attention_mask", "spatial_shapes")}
    with torch.no_grad():
        vision = net.vision_outputs(**inputs)
        dense = net.dense_features_from_hidden(vision.last_hidden_state, batch["pixel_attention_mask"])
        trained = stage2._regions(dense, batch["spatial_shapes"], batch["boxes"], batch["box_counts"])
        expected = net.get_image_region_features(**inputs, image_sizes=[(h, w) for w, h in sizes], region_infos=boxes)
    expected = F.normalize(torch.cat(expected), dim=-1)
    torch.testing.assert_close(trained, expected, rtol=1e-4, atol=1e-5)
    # Not vacuous: boxes projected with x and y exchanged pool clearly different embeddings.
    exchanged = []
    for i, n in enumerate(batch["box_counts"].tolist()):
        h, w = shapes[i]
        grid = grid_of(dense[i], batch["spatial_shapes"][i])
        exchanged.append(roi_embeddings(grid, batch["boxes"][i, :n].double() * torch.tensor([h, w, h, w])))
    exchanged = F.normalize(torch.cat(exchanged).float(), dim=-1)
    assert (exchanged - expected).abs().max() > 100 * 1e-5


# ------------------------------------------------------------------------------------ COCO learning
STEPS = 240


def region_margin(checkpoint, world) -> tuple[float, float]:
    """Mean over held-out boxes of (cosine with its own category name - mean cosine with the other
    names), by the inference path (get_image_region_features, box-walk name embeddings); and top-1."""
    import json
    from pathlib import Path

    model = FGCLIP2Model.from_pretrained(checkpoint)
    processor, tokenizer = FGCLIP2ImageProcessor.from_pretrained(checkpoint), load_tokenizer(checkpoint)
    data = json.loads(Path(world["val_ann"]).read_text())
    ids = [c["id"] for c in data["categories"]]
    names = encode_text(model, tokenizer, [c["name"] for c in data["categories"]], walk_type="box")
    margins, correct = [], []
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        if not anns:
            continue
        pil = Image.open(Path(world["val_images"], image["file_name"])).convert("RGB")
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        with torch.no_grad():
            regions = model.get_image_region_features(**processor(pil), image_sizes=[(pil.height, pil.width)],
                                                      region_infos=[boxes])[0]
        cosines = F.normalize(regions, dim=-1) @ names.t()
        for ann, row in zip(anns, cosines):
            own = ids.index(ann["category_id"])
            others = torch.cat([row[:own], row[own + 1:]])
            margins.append(float(row[own] - others.mean()))
            correct.append(int(row.argmax()) == own)
    return float(np.mean(margins)), float(np.mean(correct))


@pytest.fixture(scope="module")
def coco_runs(tmp_path_factory):
    """One tiny checkpoint, one small world, two short COCO-format runs: all objectives / no region ones."""
    from fgdense.tiny import make_tiny_checkpoint

    root = tmp_path_factory.mktemp("coco_learning")
    checkpoint = make_tiny_checkpoint(root / "ckpt", seed=0, hidden=32, layers=1, heads=2)
    world = make_world(root / "world", num_train=120, num_val=40, seed=5)
    runs = {}
    for name, options in (("all", {}), ("no_region", REGION_OBJECTIVES_OFF)):
        work_dir = root / name
        train(make_coco_config(checkpoint, world, work_dir, STEPS, **options))
        runs[name] = work_dir
    return checkpoint, world, runs


@pytest.mark.slow
def test_coco_run_lifts_held_out_box_top1(coco_runs):
    """The project's box-classification evaluator on held-out images: far above chance after training."""
    from fgdense.evaluation import evaluate_box_classification

    checkpoint, world, runs = coco_runs
    scores = {}
    for name, path in (("before", checkpoint), ("after", runs["all"] / "export")):
        report = evaluate_box_classification(FGCLIP2Model.from_pretrained(path), world["val_ann"], world["val_images"],
                                             workers=0, progress=False)
        scores[name] = 100 * report["top1"]
    chance = 100 / world["seen_categories"]
    print(f"held-out box top-1: before {scores['before']:.1f}, after {scores['after']:.1f} (chance {chance:.1f})")
    assert scores["after"] > 4 * chance and scores["after"] > scores["before"] + 25


@pytest.mark.slow
def test_region_objectives_open_a_margin_the_global_loss_does_not(coco_runs):
    checkpoint, world, runs = coco_runs
    before = region_margin(checkpoint, world)
    on, off = region_margin(runs["all"] / "export", world), region_margin(runs["no_region"] / "export", world)
    print(f"own-name margin / top-1: before {before}, region objectives on {on}, off {off}")
    # The global objectives alone open some margin (they move the whole image toward its caption's names);
    # the region objectives open a wider one and, above all, put each box's own name first far more often.
    assert on[0] > off[0] + 0.02
    assert on[1] > off[1] + 0.2 and on[1] > 2 * off[1]


@pytest.mark.slow
def test_each_region_objective_falls_in_a_coco_run(coco_runs):
    scalars = [s for s in logged_scalars(coco_runs[2]["all"]) if "loss" in s]
    assert len(scalars) == STEPS
    for key in ("loss_region", "loss_hard"):
        values = [s[key] for s in scalars]
        first, last = np.mean(values[:20]), np.mean(values[-20:])
        print(f"{key}: first 20 steps {first:.3f}, last 20 {last:.3f}")
        assert last < 0.5 * first, f"{key} did not fall: {first:.3f} -> {last:.3f}"
    off = [s for s in logged_scalars(coco_runs[2]["no_region"]) if "loss" in s]
    assert not any(k in s for s in off for k in ("loss_region", "loss_hard", "loss_text_intra"))
