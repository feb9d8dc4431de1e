# Smoke-run config: a tiny checkpoint (python tools/make_tiny_checkpoint.py fg-tiny), fp32, CPU-sized,
# on the FineHARD records of the shapes world (python tools/make_shapes_world.py data/shapes-world).
# python tools/train_stage2.py configs/train/tiny.py --cfg-options checkpoint=fg-tiny
# (other FineHARD data: ann_file=... image_root=... image_root_cn=...)
_base_ = ["./base.py"]

checkpoint = "fg-tiny"
data_root = None
ann_file = "data/shapes-world/finehard"
image_root = "data/shapes-world/train/images"
image_root_cn = "data/shapes-world/train/images"
batch_size = 8
max_iters = 40
warmup_iters = 4
lr = 2e-3
warmup_start_factor = 0.1

model = dict(gradient_checkpointing=False)
train_dataloader = dict(num_workers=0, persistent_workers=False)
# CPU smoke runs train in fp32 (mmengine's AMP wrapper needs a GPU).
optim_wrapper = dict(type="OptimWrapper", _delete_=True,
                     optimizer=dict(type="AdamW", lr=None, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.001),
                     clip_grad=dict(max_norm=1.0))
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=20))
env_cfg = dict(dist_cfg=dict(backend="gloo"))
log_processor = dict(window_size=5)
