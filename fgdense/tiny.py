"""Tiny random FG-CLIP 2 checkpoints for offline smoke runs, demos and tests.

The folder has everything a released checkpoint has (config, safetensors weights, preprocessor
config, tokenizer files), so every loader and tool accepts it. The tokenizer is a small byte-level
BPE trained here on a built-in bilingual word list: any text, Chinese included, encodes without
unknown tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import Architecture, FGCLIP2Config, architecture_config
from .model.modeling import FGCLIP2Model
from .model.weights import save_checkpoint
from .processing.image import FGCLIP2ImageProcessor

_ENGLISH = (
    "a an the of on in at with and or near left right top bottom red green blue black white yellow "
    "brown grey small large big little red mug cup coffee cat cats dog dogs person man woman child "
    "people car bus bicycle tree trees sky grass road building house window door table chair sofa "
    "bed book laptop computer keyboard phone bottle plate bowl food pizza flower plant water sea "
    "mountain cloud sun light shirt wearing holding sitting standing photo picture image of a cat "
    "background object thing astronaut rocket camera coin coins rock stone wall floor"
).split()
_CHINESE = (
    "电脑 猫 狗 人 男人 女人 孩子 汽车 公交车 自行车 树 天空 草地 道路 建筑 房子 窗户 门 桌子 椅子 沙发 床 书 "
    "键盘 手机 瓶子 盘子 碗 食物 花 植物 水 海 山 云 太阳 灯 衬衫 杯子 咖啡 红色 绿色 蓝色 黑色 白色 黄色 "
    "左边 右边 上面 下面 一个 一只 的 在 和 照片 图片 背景 物体 宇航员 火箭 相机 硬币 石头 墙 地板 卧室 衣架 鞋子"
).split()


def tiny_config(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4) -> FGCLIP2Config:
    return architecture_config(Architecture(hidden=hidden, layers=layers, heads=heads, mlp=2 * hidden), vocab_size)


def build_tokenizer(vocab_size: int = 600, attention_mask: bool = True):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Gemma's special tokens (<pad>=0, <eos>=1).

    It returns an ``attention_mask`` beside the ids, as Gemma's tokenizer does, unless
    ``attention_mask=False`` (as SigLIP's tokenizer, which returns ids only).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [" ".join(_ENGLISH)] * 4 + [" ".join(_CHINESE)] * 4 + _ENGLISH + _CHINESE
    core.train_from_iterator(corpus, trainer=trainer)
    names = ["input_ids", "attention_mask"] if attention_mask else ["input_ids"]
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", unk_token="<unk>", model_input_names=names)


def make_tiny_checkpoint(out_dir, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4,
                         attention_mask: bool = True) -> Path:
    """Write a complete random tiny FG-CLIP 2 checkpoint folder and return its path.

    ``attention_mask=False`` gives it a tokenizer that returns no attention mask (SigLIP-style).
    """
    out = Path(out_dir)
    tokenizer = build_tokenizer(attention_mask=attention_mask)
    torch.manual_seed(seed)
    model = FGCLIP2Model(tiny_config(len(tokenizer), hidden, layers, heads))
    with torch.no_grad():
        # As stage 2 starts: the new heads begin as copies of SigLIP 2's (see siglip2_init).
        model.dense_feature_head.load_state_dict(model.vision_model.head.state_dict())
        model.boxtext_head.load_state_dict(model.text_model.head.state_dict())
        model.longtext_head.load_state_dict(model.text_model.head.state_dict())
        model.logit_scale.fill_(torch.log(torch.tensor(10.0)))
        # sigmoid calibration puts the 50 % match point at cosine 0.1, so random demos label something
        model.logit_bias.fill_(-1.0)
    processor = FGCLIP2ImageProcessor(max_num_patches=256, dynamic_max_patches=True, patch_size=16, resample=2)
    save_checkpoint(model, out, tokenizer=tokenizer, processor=processor)
    return out
