# Stage-2 region fine-tuning of FG-CLIP 2 base on FineHARD-format data (mmengine config).
# Run: python tools/train_stage2.py configs/train/base.py --cfg-options data_root=/data/finehard
# Multi-GPU: torchrun --nproc_per_node 8 tools/train_stage2.py configs/train/base.py --launcher pytorch
custom_imports = dict(imports=["fgdense.train"], allow_failed_imports=False)

# Settings. tools/train_stage2.py fills every `None` below from these, so a derived config or
# `--cfg-options checkpoint=... data_root=... batch_size=...` changes them in one place.
checkpoint = "qihoo360/fg-clip2-base"  # an FG-CLIP 2 checkpoint (hub id or folder) ...
init_from = "fgclip2"  # ... or a SigLIP 2 one with init_from = "siglip2"
data_root = "data/finehard"
ann_file = None  # a JSON/JSONL file or a folder of them; default <data_root>/annotations
image_root = None  # English images; default <data_root>/images_en
image_root_cn = None  # Chinese images; default <data_root>/images_cn
batch_size = 32  # per process
max_iters = 20000
warmup_iters = 500
lr = 1e-5
num_negatives = 10  # hard-negative captions per box
# How texts reach the text tower: "none" = input ids only, as the official training does; "tokenizer" = with
# the attention mask the tokenizer returns, as the official evaluation and fgdense's tools feed text.
text_mask = "none"

model = dict(
    type="FGCLIP2Stage2",
    checkpoint=None,
    init_from=None,
    # Objective weights (the official recipe); 0 switches an objective off.
    loss_weights=dict(long=1.0, short=1.0, region=0.2, text_intra=0.1, hard=0.5),
    gradient_checkpointing=True,
    frozen=[],  # parameter-name prefixes, e.g. ["text_model."] freezes the text tower
)

train_dataloader = dict(
    batch_size=None,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    # Each batch one language; infinite: pass after pass without the loop restarting the dataloader.
    batch_sampler=dict(type="MonolingualBatchSampler", infinite=True),
    # max_num_patches=None: the official per-batch dynamic patch budget (128 ... 1024).
    collate_fn=dict(type="finehard_collate", checkpoint=None, num_negatives=None, max_num_patches=None,
                    text_mask=None),
    dataset=dict(type="FineHARDDataset", ann_file=None, image_root=None, image_root_cn=None,
                 num_negatives=None, box_text="long_expr", max_boxes=8),
)

train_cfg = dict(type="IterBasedTrainLoop", max_iters=None)

optim_wrapper = dict(
    type="AmpOptimWrapper",
    dtype="bfloat16",
    optimizer=dict(type="AdamW", lr=None, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.001),
    # Per-module learning rates: e.g. dict(text_model=dict(lr_mult=0.1)).
    paramwise_cfg=dict(custom_keys={"logit_scale": dict(decay_mult=0.0), "logit_bias": dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=1.0),
)

# None: linear warm-up over warmup_iters from lr * warmup_start_factor, then cosine decay to 0.
param_scheduler = None
warmup_start_factor = 1e-3

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=1000, max_keep_ckpts=3),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [
    dict(type="SkippedImagesHook"),
    dict(type="ExportHook", name="export", interval=0),  # <work_dir>/export: an fgdense checkpoint folder
]

# Some objectives can be off for a batch (no boxes), so DDP must tolerate unused parameters.
model_wrapper_cfg = dict(type="MMDistributedDataParallel", find_unused_parameters=True)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl"))
randomness = dict(seed=0)
log_processor = dict(by_epoch=False, window_size=50)
log_level = "INFO"
load_from = None
resume = False
