"""A small generated FineHARD-format dataset (coloured shapes, English and Chinese) for smoke runs.

Every image holds two to three shapes; each shape is a box whose caption names its colour and shape,
with the 10 hard negatives naming other colour/shape pairs. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": ((220, 30, 30), "红色"), "green": ((30, 180, 40), "绿色"), "blue": ((30, 60, 220), "蓝色"),
           "yellow": ((240, 220, 20), "黄色"), "black": ((10, 10, 10), "黑色"), "white": ((250, 250, 250), "白色")}
SHAPES = {"square": "方块", "circle": "圆形"}


def _name(colour: str, shape: str, chinese: bool) -> str:
    return f"{COLOURS[colour][1]}的{SHAPES[shape]}" if chinese else f"{colour} {shape}"


def make_finehard_dataset(out_dir, num_en: int = 24, num_cn: int = 24, seed: int = 0,
                          size_range: tuple[int, int] = (64, 128)) -> dict:
    """Write images and annotations under ``out_dir``; returns the dataset arguments.

    Layout: ``images_en/``, ``images_cn/``, ``annotations/en.jsonl`` (JSONL) and
    ``annotations/cn.json`` (a JSON list). The returned dict has ``ann_file`` (the annotations
    folder), ``image_root`` and ``image_root_cn``.
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for chinese, count, root in ((False, num_en, "images_en"), (True, num_cn, "images_cn")):
        (out / root).mkdir(parents=True, exist_ok=True)
        records = []
        for index in range(count):
            width, height = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            background = tuple(int(v) for v in rng.integers(90, 160, size=3))
            image = Image.new("RGB", (width, height), background)
            draw = ImageDraw.Draw(image)
            chosen = [pairs[i] for i in rng.choice(len(pairs), size=int(rng.integers(2, 4)), replace=False)]
            boxes = []
            for colour, shape in chosen:
                bw, bh = (int(v) for v in (rng.integers(width // 4, width // 2), rng.integers(height // 4, height // 2)))
                x1, y1 = int(rng.integers(0, width - bw)), int(rng.integers(0, height - bh))
                xy = [x1, y1, x1 + bw, y1 + bh]
                (draw.rectangle if shape == "square" else draw.ellipse)(xy, fill=COLOURS[colour][0])
                name = _name(colour, shape, chinese)
                others = [p for p in pairs if p != (colour, shape)]
                negatives = [_name(*others[i], chinese) for i in rng.permutation(len(others))[:10]]
                boxes.append({"bbox": [xy[0] / width, xy[1] / height, xy[2] / width, xy[3] / height],
                              "short_expr": name,
                              "long_expr": (f"图片中的一个{name}" if chinese else f"a {name} in the picture"),
                              "flag_short_neg": 1, "short_expr_negs": negatives})
            names = [_name(c, s, chinese) for c, s in chosen]
            f_path = f"{index:04d}.png"
            image.save(out / root / f_path)
            records.append({"f_path": f_path, "is_cn": chinese,
                            "caption": ("一张图片，上面有" + "、".join(names)) if chinese else
                                       ("a picture showing a " + " and a ".join(names)),
                            "short_caption": "、".join(names) if chinese else ", ".join(names),
                            "bbox_info": boxes})
        if chinese:
            (out / "annotations" / "cn.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        else:
            lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
            (out / "annotations" / "en.jsonl").write_text(lines + "\n", encoding="utf-8")
    return {"ann_file": str(out / "annotations"), "image_root": str(out / "images_en"),
            "image_root_cn": str(out / "images_cn")}
