"""An interrupted run resumed from its checkpoint ends exactly where an uninterrupted run ends."""

import shutil

import pytest
import torch

from _train_helpers import logged_scalars, make_coco_config, make_config, make_setup, train

STEPS, STOP = 6, 3


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)  # our own mmengine checkpoint


def assert_same(a, b, what):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=lambda m: f"{what}: {m}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for key in a:
            assert_same(a[key], b[key], f"{what}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{what}[{i}]")
    else:
        assert a == b, f"{what}: {a} != {b}"


@pytest.mark.slow
@pytest.mark.parametrize("data_format", ["finehard", "coco"])
def test_resume_matches_uninterrupted_run(tmp_path, data_format):
    checkpoint, data = make_setup(tmp_path, num_train=8)
    if data_format == "coco":
        # COCO-format: texts, negatives, flips and crops drawn afresh each pass must repeat on resume.
        world = {"train_ann": str(tmp_path / "data" / "train" / "instances.json"), "train_images": data["image_root"]}
        options = {"batch_size": 4, "train_dataloader.dataset.crop_prob": 0.5, "train_dataloader.dataset.hflip_prob": 0.5,
                   "train_dataloader.dataset.templates": ["{}", "a {}"]}

        def make(work_dir):
            cfg = make_coco_config(checkpoint, world, work_dir, STEPS, **options)
            cfg.default_hooks.checkpoint.interval = STOP
            return cfg
    else:
        def make(work_dir):
            cfg = make_config(checkpoint, data, work_dir, STEPS)
            cfg.default_hooks.checkpoint.interval = STOP
            return cfg
    full = tmp_path / "full"
    train(make(full))

    # The interrupted run: its work dir holds what it had written when stopped after STOP steps.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(full / f"iter_{STOP}.pth", resumed / f"iter_{STOP}.pth")
    (resumed / "last_checkpoint").write_text(str(resumed / f"iter_{STOP}.pth"))
    cfg = make(resumed)
    cfg.resume = True
    runner = train(cfg)

    assert runner.iter == STEPS
    assert [s["step"] for s in logged_scalars(resumed) if "loss" in s] == list(range(STOP + 1, STEPS + 1))
    a, b = load(full / f"iter_{STEPS}.pth"), load(resumed / f"iter_{STEPS}.pth")
    assert a["meta"]["iter"] == b["meta"]["iter"] == STEPS
    assert_same(a["optimizer"], b["optimizer"], "optimizer")
    assert_same(a["state_dict"], b["state_dict"], "state_dict")
    assert_same(a["param_schedulers"], b["param_schedulers"], "param_schedulers")
    # The optimizer really moved between the stop and the end (the comparison is not vacuous).
    stopped = load(full / f"iter_{STOP}.pth")
    some = next(iter(a["optimizer"]["state"]))  # a parameter that was trained
    assert stopped["optimizer"]["state"][some]["step"] != a["optimizer"]["state"][some]["step"]
