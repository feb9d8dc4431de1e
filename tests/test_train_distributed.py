"""Several processes (gloo on CPU): negatives gathered across ranks with gradients, one shared threshold."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.multiprocessing as mp

from _train_helpers import REPO, TINY_CONFIG, make_setup
from fgdense.train.losses import _sigmoid_loss, siglip_loss, sync_threshold

SCALE, BIAS = 2.0, -1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, images, texts, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    image = images[rank].clone().requires_grad_()
    text = texts[rank].clone().requires_grad_()
    stats = {}
    loss = siglip_loss(image, text, torch.tensor(SCALE), torch.tensor(BIAS), stats=stats)
    loss.backward()
    threshold = sync_threshold(torch.tensor([3.0, 14.0][rank]))
    torch.save({"loss": loss.detach(), "image_grad": image.grad, "text_grad": text.grad, "threshold": threshold,
                "others": stats["texts_from_other_ranks"]}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_siglip_gathers_negatives_with_gradients(tmp_path):
    torch.manual_seed(0)
    sizes = [3, 2]  # unequal batches: the gather pads and cuts back
    images = [torch.nn.functional.normalize(torch.randn(n, 8), dim=-1) for n in sizes]
    texts = [torch.nn.functional.normalize(torch.randn(n, 8), dim=-1) for n in sizes]
    mp.spawn(_worker, args=(2, free_port(), images, texts, str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    # Single-process reference: each rank's loss = its own pairs + the other rank's texts as negatives.
    ref_images = [i.clone().requires_grad_() for i in images]
    ref_texts = [t.clone().requires_grad_() for t in texts]
    scale, bias = torch.tensor(SCALE).exp(), torch.tensor(BIAS)
    losses = [_sigmoid_loss(ref_images[r], ref_texts[r], scale, bias, False)
              + _sigmoid_loss(ref_images[r], ref_texts[1 - r], scale, bias, True) for r in range(2)]
    sum(losses).backward()
    for r in range(2):
        torch.testing.assert_close(got[r]["loss"], losses[r].detach())
        torch.testing.assert_close(got[r]["image_grad"], ref_images[r].grad)
        # A text's gradient includes its use as a negative on the other process.
        torch.testing.assert_close(got[r]["text_grad"], ref_texts[r].grad)
        assert got[r]["others"] == sizes[1 - r]
        assert float(got[r]["threshold"]) == 8.5  # mean of 3 and 14, then clamped to [0, 10]
    assert ref_texts[0].grad.abs().sum() > 0


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    checkpoint, data = make_setup(tmp_path, num_train=8)
    config = tmp_path / "ddp.py"
    config.write_text(textwrap.dedent(f"""
        _base_ = [{str(TINY_CONFIG)!r}]
        custom_hooks = [dict(type="SkippedImagesHook"), dict(type="ExportHook"), dict(type="RankSummaryHook")]
    """))
    work_dir = tmp_path / "work"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(REPO / "tools" / "train_stage2.py"), str(config), "--launcher", "pytorch", "--work-dir", str(work_dir),
           "--cfg-options", f"checkpoint={checkpoint}", f"ann_file={data['ann_file']}",
           f"image_root={data['image_root']}", f"image_root_cn={data['image_root_cn']}", "batch_size=2",
           "max_iters=8", "lr=1e-2", "train_dataloader.dataset.max_boxes=2", "model.gradient_checkpointing=True"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((work_dir / "rank_summary" / f"rank{r}.json").read_text()) for r in range(2)]
    assert [s["iter"] for s in ranks] == [8, 8]
    # Every image was also scored against the other process's 2 texts.
    assert [s["texts_from_other_ranks"] for s in ranks] == [2, 2]
    # One threshold for both: the clamped mean of the two processes' own estimates.
    assert ranks[0]["hard_threshold"] == ranks[1]["hard_threshold"]
    mean = (ranks[0]["local_hard_threshold"] + ranks[1]["local_hard_threshold"]) / 2
    assert ranks[0]["hard_threshold"] == pytest.approx(min(max(mean, 0.0), 10.0), abs=1e-6)
    assert ranks[0]["local_hard_threshold"] != ranks[1]["local_hard_threshold"]
    assert ranks[0]["hard_threshold"] > 0  # not merely both clamped to 0
    assert (work_dir / "export" / "model.safetensors").is_file()


def _empty_batch_worker(rank, port, out):
    """Rank 1's images were all unreadable; its collectives must still pair with rank 0's."""
    from datetime import timedelta

    import torch.distributed as dist

    from fgdense.model import FGCLIP2Model
    from fgdense.tiny import tiny_config
    from fgdense.train.model import FGCLIP2Stage2

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    torch.manual_seed(0)
    model = FGCLIP2Stage2(network=FGCLIP2Model(tiny_config(vocab_size=64, hidden=32, layers=1, heads=2)))
    if rank == 0:  # an ordinary batch: long and short SigLIP losses, then the threshold sync
        image = torch.nn.functional.normalize(torch.randn(2, 32), dim=-1).requires_grad_()
        text = torch.nn.functional.normalize(torch.randn(2, 32), dim=-1).requires_grad_()
        loss = sum(siglip_loss(image, text, model.model.logit_scale, model.model.logit_bias) for _ in range(2))
        sync_threshold(torch.tensor(1.0))
    else:
        loss = model._empty_batch_losses()["loss_empty"]
    loss.backward()
    check = torch.tensor([rank + 1.0])
    dist.all_reduce(check)  # stands in for DDP's gradient all-reduce: fails if the ranks fell out of step
    torch.save(check, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_a_rank_with_an_empty_batch_stays_in_step(tmp_path):
    mp.spawn(_empty_batch_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [float(torch.load(tmp_path / f"rank{r}.pt")) for r in range(2)] == [3.0, 3.0]
