"""One stage-2 training step on the GPU's precision path, run on the CPU, against fp32.

configs/train/*.py train with mmengine's AmpOptimWrapper in bfloat16: the forward pass under
``torch.autocast(bfloat16)`` over fp32 weights, gradients in fp32, clipped to norm 1, AdamW. The step is
done the same way here by hand (mmengine's wrapper wants a GPU). Stated tolerance: every loss within 2 %
of fp32's, the gradient within cosine 0.99 of fp32's (measured: 1 % and 0.9993), and after one step the
model's fp32 loss within 2 % of the fp32-trained model's. bf16 weights (the whole model in bfloat16) are
checked to give the same losses within 2 % too.
"""

import copy

import pytest
import torch

from fgdense import FGCLIP2ImageProcessor, FGCLIP2Model, load_tokenizer
from fgdense.train.data import FineHARDCollator, FineHARDDataset
from fgdense.train.model import FGCLIP2Stage2
from fgdense.train.shapes_world import make_shapes_world

LOSS_TOLERANCE = 0.02  # relative
GRADIENT_COSINE = 0.99
# a first step's size as configs/train/tiny.py takes it (its warm-up starts at 2e-3 x 0.1): AdamW's first step
# moves every weight by about lr, and a step many times larger overshoots on a random tiny model
LR = 2e-4


@pytest.fixture(scope="module")
def batch(tiny_checkpoint, tmp_path_factory):
    data = make_shapes_world(tmp_path_factory.mktemp("world_bf16"), num_train=4, num_val=0, seed=2)["finehard"]
    dataset = FineHARDDataset(data["ann_file"], data["image_root"], data["image_root_cn"], max_boxes=2, progress=False)
    collate = FineHARDCollator(load_tokenizer(tiny_checkpoint), FGCLIP2ImageProcessor.from_pretrained(tiny_checkpoint))
    return collate([dataset[i] for i in range(4)])


def losses_of(model, batch, autocast: bool) -> dict:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        losses = model(**batch)
    return {k: v for k, v in losses.items() if k.startswith("loss")}


def step(model, batch, autocast: bool) -> dict:
    """One training step as AmpOptimWrapper(bfloat16) does it: losses, backward, clip to 1, AdamW."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, betas=(0.9, 0.98),
                                  eps=1e-6, weight_decay=0.001)
    losses = losses_of(model, batch, autocast)
    sum(losses.values()).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    gradient = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    optimizer.step()
    return {"losses": {k: float(v.detach()) for k, v in losses.items()}, "gradient": gradient}


def close(a: float, b: float) -> bool:
    return abs(a - b) <= LOSS_TOLERANCE * max(abs(b), 1e-3)


def test_one_bf16_autocast_step_matches_fp32(tiny_checkpoint, batch):
    torch.manual_seed(0)
    reference = FGCLIP2Stage2(str(tiny_checkpoint))
    mixed = copy.deepcopy(reference)
    with torch.no_grad():
        before = sum(float(v) for v in losses_of(reference, batch, False).values())
    fp32, bf16 = step(reference, batch, autocast=False), step(mixed, batch, autocast=True)
    assert set(fp32["losses"]) == set(bf16["losses"]) >= {"loss_long", "loss_short", "loss_region", "loss_hard"}
    for name, value in fp32["losses"].items():
        assert close(bf16["losses"][name], value), (name, bf16["losses"][name], value)
    assert bf16["gradient"].dtype == torch.float32  # the weights stay fp32: so do their gradients
    cosine = torch.nn.functional.cosine_similarity(fp32["gradient"], bf16["gradient"], dim=0)
    assert cosine >= GRADIENT_COSINE, float(cosine)
    with torch.no_grad():
        after_fp32 = sum(float(v) for v in losses_of(reference, batch, False).values())
        after_bf16 = sum(float(v) for v in losses_of(mixed, batch, False).values())
    assert after_fp32 < before and after_bf16 < before  # both steps went downhill ...
    assert close(after_bf16, after_fp32)  # ... to the same place


def test_bf16_weights_give_the_same_losses(tiny_checkpoint, batch):
    reference = losses_of(FGCLIP2Stage2(str(tiny_checkpoint)), batch, False)
    model = FGCLIP2Stage2(network=FGCLIP2Model.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16))
    losses = losses_of(model, batch, False)
    sum(losses.values()).backward()  # and the backward pass runs in bf16 throughout
    for name, value in reference.items():
        assert close(float(losses[name].detach()), float(value.detach())), name
    assert model.model.dense_feature_head.mlp.fc1.weight.grad.dtype == torch.bfloat16
