# Stage-2 fine-tuning of FG-CLIP 2 base on a COCO / LVIS-format detection dataset (mmengine config).
# python tools/train_stage2.py configs/train/coco_base.py --cfg-options \
#     ann_file=data/coco/annotations/instances_train2017.json image_root=data/coco/train2017
# Region texts are the category names; hard negatives other categories' names; the text side is
# frozen so that names never trained on keep their embeddings (see docs/training.md).
_base_ = ["./base.py"]

checkpoint = "qihoo360/fg-clip2-base"
data_root = None  # COCO-format data names its files directly:
ann_file = None  # instances JSON (COCO, LVIS or your own)
image_root = None  # the folder its file_name entries are relative to
names_file = None  # optional: per category id a display name, synonyms, Chinese name (name_zh)
batch_size = 32  # per process
max_iters = 5000
warmup_iters = 200
lr = 1e-5
num_negatives = 10  # other categories' names per box
# Train on text as it will be used: with the tokenizer's attention mask (the tools' and tools/eval_boxclass.py's
# default text policy) and, below, CLIP's 80 prompt templates (its COCO / LVIS protocol for English names)
# mixed with bare names (the tools' labels).
text_mask = "tokenizer"

model = dict(
    # region: the main objective here (region embeddings against category names). text_intra is off:
    # it only moves texts, and the text side is frozen. dense: every patch against the batch's category
    # texts and an explicit background, from the file's masks (nothing when the file has none; see
    # docs/training.md). mask: mask-pooled regions; patch_region: patches pulled toward their box's
    # region embedding (both measured and not kept, docs/quality.md). distill_*: stay close to the
    # starting model's global / dense image features.
    loss_weights=dict(long=1.0, short=1.0, region=1.0, text_intra=0.0, hard=0.5, mask=0.0, dense=1.0,
                      patch_region=0.0, distill_global=0.0, distill_dense=0.0),
    # The text tower and the text heads: the embeddings of every name, trained on or not, stay put.
    frozen=["text_model.", "boxtext_head.", "longtext_head."],
)

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type="CocoRegionDataset",
        ann_file=None,
        image_root=None,
        names_file=None,
        languages=["en"],  # ["en", "zh"] with a names file that gives Chinese names
        # One drawn per box: "imagenet" = CLIP's 80, which the COCO / LVIS evaluation protocols average over;
        # or a list, e.g. ["{}", "a photo of a {}"]. Chinese: the bare name, as the BoxClass-CN protocol.
        templates="imagenet",
        templates_zh=["{}"],
        # Half the boxes get the bare name instead: what the tools' labels and BoxClass-CN prompt with.
        bare_prob=0.5,
        synonym_prob=0.0,  # how often a box's text is a synonym of its category instead
        num_negatives=None,
        negatives="random",  # or "confused": half of them from the categories the starting model confuses
        checkpoint=None,  # for negatives="confused" (default: the model's checkpoint)
        min_box_size=8,  # boxes narrower or lower than this (pixels) are skipped as tiny
        max_boxes=8,  # boxes per image and pass (a fresh random choice each pass)
        masks=None,  # None: keep segmentations when an objective reads them (dense, mask, patch_region > 0)
        hflip_prob=0.5,  # mirror left-right (boxes and masks too)
        vflip_prob=0.0,  # upside down: off for photographs
        crop_prob=0.0,  # random windows of crop_scale of the area (boxes min_visible inside are kept)
        crop_scale=(0.5, 1.0),
        min_visible=0.6,
    ),
)
