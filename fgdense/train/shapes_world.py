"""A small learnable world of coloured shapes, named in English and Chinese, for training and evaluation.

Every object has a colour, a shape, a texture and a size. Its category is colour + shape
("red circle" / "红色圆形"); texture and size are attributes its longer descriptions name. Some
colour-shape combinations are held out: they never appear in a training image and appear only in the
validation images, as the open-vocabulary check (every colour and every shape is still seen in other
combinations). The world is written in the formats fgdense reads:

* COCO instances with polygon masks: ``train/instances.json`` (the seen categories),
  ``val/instances.json`` (the seen categories and their validation boxes) and
  ``val/instances_novel.json`` (every category, only the boxes of held-out combinations);
* a names file ``names.json`` (id, name, synonyms, Chinese name per category);
* FineHARD records of the training images: ``finehard/en.jsonl`` (JSON lines) and
  ``finehard/cn.json`` (a JSON list), both relative to ``train/images``;
* VOC-style label PNGs ``{train,val}/masks/<stem>.png`` (0 = background, k = category id k, palette
  colours) with ``classes.txt`` (one name per line, ``background`` first, so the line number is the
  label value).

Images are small (80 to 112 pixels a side by default): a tiny model learns the world on a CPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": ((210, 35, 35), "红色"), "green": ((35, 165, 55), "绿色"), "blue": ((40, 75, 215), "蓝色"),
           "yellow": ((235, 205, 25), "黄色"), "purple": ((130, 40, 170), "紫色"), "orange": ((240, 120, 20), "橙色"),
           "cyan": ((20, 185, 200), "青色")}
DEFAULT_COLOURS = ("red", "green", "blue", "yellow")  # the benchmark world; the others make variants
SHAPES = {"circle": ("圆形", "disc"), "square": ("方块", "block"), "triangle": ("三角形", "wedge"),
          "cross": ("十字", "plus sign")}
TEXTURES = {"solid": "纯色", "striped": "条纹", "dotted": "圆点"}
SIZES = {"small": "小", "large": "大"}
# What lies behind the objects: one flat grey, or a grey texture (soft blotches and fine stripes in
# greys) that a patch must tell from a textured object by colour, not by being uniform.
BACKGROUNDS = ("flat", "textured")
# One held-out shape per colour and one colour per shape (a Latin square), so every colour and every
# shape is trained on in other combinations.
HELD_OUT = (("red", "cross"), ("green", "triangle"), ("blue", "square"), ("yellow", "circle"))


@dataclass
class WorldSpec:
    """What :func:`make_shapes_world` draws. The defaults are the benchmark world."""

    colours: tuple[str, ...] = DEFAULT_COLOURS
    shapes: tuple[str, ...] = tuple(SHAPES)
    textures: tuple[str, ...] = tuple(TEXTURES)
    sizes: tuple[str, ...] = tuple(SIZES)
    held_out: tuple[tuple[str, str], ...] = HELD_OUT
    num_train: int = 300
    num_val: int = 100
    image_size: tuple[int, int] = (80, 112)  # each side drawn from this range, pixels
    objects: tuple[int, int] = (1, 4)  # objects per image, inclusive
    # Object side in pixels for each size name (the larger image side scales it: these are for 96 px).
    size_px: dict = field(default_factory=lambda: {"small": (16, 24), "large": (28, 40)})
    backgrounds: tuple[str, ...] = ("flat",)  # drawn per image
    seed: int = 0

    def check(self) -> None:
        for what, chosen, known in (("colour", self.colours, COLOURS), ("shape", self.shapes, SHAPES),
                                    ("texture", self.textures, TEXTURES), ("size", self.sizes, SIZES),
                                    ("background", self.backgrounds, BACKGROUNDS)):
            unknown = [c for c in chosen if c not in known]
            if unknown or not chosen:
                raise ValueError(f"unknown or no {what}s {unknown}; known: {', '.join(known)}")
        for pair in self.held_out:
            if tuple(pair) not in {(c, s) for c in self.colours for s in self.shapes}:
                raise ValueError(f"held-out combination {pair} is not a colour and a shape of this world")
        if len(self.seen) < 2:
            raise ValueError("the world needs at least two trained (not held-out) categories")
        if self.num_train < 1 or self.num_val < 0:
            raise ValueError("num_train must be >= 1 and num_val >= 0")
        low, high = self.objects
        if not 1 <= low <= high:
            raise ValueError(f"objects per image must be a range 1 <= low <= high, got {self.objects}")

    @property
    def combos(self) -> list[tuple[str, str]]:
        return [(c, s) for c in self.colours for s in self.shapes]

    @property
    def seen(self) -> list[tuple[str, str]]:
        held = {tuple(p) for p in self.held_out}
        return [p for p in self.combos if p not in held]


def category_name(colour: str, shape: str, chinese: bool = False) -> str:
    return f"{COLOURS[colour][1]}{SHAPES[shape][0]}" if chinese else f"{colour} {shape}"


def describe(obj: dict, chinese: bool = False) -> str:
    """The long expression of an object: size, texture, colour and shape."""
    if chinese:
        return f"{SIZES[obj['size']]}的{TEXTURES[obj['texture']]}{category_name(obj['colour'], obj['shape'], True)}"
    return f"a {obj['size']} {obj['texture']} {category_name(obj['colour'], obj['shape'])}"


def _polygon(shape: str, cx: float, cy: float, side: float) -> list[tuple[float, float]]:
    half = side / 2
    if shape == "circle":
        return [(cx + half * math.cos(2 * math.pi * k / 32), cy + half * math.sin(2 * math.pi * k / 32)) for k in range(32)]
    if shape == "square":
        return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "triangle":
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "cross":
        t = side / 6  # arms one third of the side wide
        pts = [(-t, -half), (t, -half), (t, -t), (half, -t), (half, t), (t, t), (t, half), (-t, half), (-t, t),
               (-half, t), (-half, -t), (-t, -t)]
        return [(cx + x, cy + y) for x, y in pts]
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, colour: tuple, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An HxWx3 fill of the whole image in ``colour`` with the texture's darker pattern."""
    width, height = size
    base = np.array(colour, dtype=np.float32)
    fill = np.broadcast_to(base, (height, width, 3)).copy()
    dark = base * 0.45
    yy, xx = np.mgrid[0:height, 0:width]
    if texture == "striped":
        direction = rng.integers(3)
        coord = (yy, xx, xx + yy)[direction] + rng.integers(6)
        fill[(coord % 6) < 3] = dark
    elif texture == "dotted":
        ox, oy = rng.integers(6, size=2)
        fill[((xx + ox) % 6 - 2.5) ** 2 + ((yy + oy) % 6 - 2.5) ** 2 < 2.6] = dark
    return fill


def _grey_texture(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An (H, W) grey pattern to add to a background: smooth blotches plus fine stripes, about +-30."""
    width, height = size
    coarse = rng.normal(0, 1, (height // 12 + 2, width // 12 + 2)).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.uniform(0, math.pi)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / rng.uniform(4, 9))
    return 18 * blotches + 10 * stripes


def _place(rng, width, height, side, taken) -> tuple[float, float] | None:
    """A centre for a ``side``-pixel object that keeps 2 pixels clear of the others, or None."""
    for _ in range(60):
        cx = rng.uniform(side / 2 + 1, width - side / 2 - 1)
        cy = rng.uniform(side / 2 + 1, height - side / 2 - 1)
        box = (cx - side / 2 - 2, cy - side / 2 - 2, cx + side / 2 + 2, cy + side / 2 + 2)
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            taken.append(box)
            return cx, cy
    return None


def draw_image(spec: WorldSpec, combos: list[tuple[str, str]], rng: np.random.Generator):
    """One image of the world: (PIL image, label map (H, W) of category ids, objects)."""
    ids = {pair: k + 1 for k, pair in enumerate(spec.combos)}
    width, height = (int(v) for v in rng.integers(spec.image_size[0], spec.image_size[1] + 1, size=2))
    grey = float(rng.uniform(95, 170))
    pixels = np.full((height, width, 3), grey, dtype=np.float32) + rng.normal(0, 4, (1, 1, 3))
    if spec.backgrounds[int(rng.integers(len(spec.backgrounds)))] == "textured":
        pixels += _grey_texture((width, height), rng)[..., None]
    labels = np.zeros((height, width), dtype=np.uint8)
    scale = max(width, height) / 96
    count = int(rng.integers(spec.objects[0], spec.objects[1] + 1))
    objects, taken = [], []
    for _ in range(count):
        colour, shape = combos[int(rng.integers(len(combos)))]
        size = spec.sizes[int(rng.integers(len(spec.sizes)))]
        texture = spec.textures[int(rng.integers(len(spec.textures)))]
        low, high = spec.size_px[size]
        side = float(rng.uniform(low, high)) * scale
        side = min(side, min(width, height) - 4)
        centre = _place(rng, width, height, side, taken)
        if centre is None:
            continue
        polygon = _polygon(shape, *centre, side)
        silhouette = Image.new("L", (width, height), 0)
        ImageDraw.Draw(silhouette).polygon(polygon, fill=255)
        inside = np.asarray(silhouette) > 0
        if not inside.any():
            continue
        pixels[inside] = _texture(texture, COLOURS[colour][0], (width, height), rng)[inside]
        labels[inside] = ids[(colour, shape)]
        ys, xs = np.nonzero(inside)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        objects.append(dict(colour=colour, shape=shape, texture=texture, size=size, category_id=ids[(colour, shape)],
                            bbox=box, area=int(inside.sum()),
                            polygon=[round(v, 2) for point in polygon for v in point]))
    pixels += rng.normal(0, 5, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image, labels, objects


def _voc_palette() -> list[int]:
    """The PASCAL VOC colour map (label k -> a distinct colour; 0 black)."""
    palette = []
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _categories(spec: WorldSpec, pairs) -> list[dict]:
    ids = {pair: k + 1 for k, pair in enumerate(spec.combos)}
    return [{"id": ids[p], "name": category_name(*p), "supercategory": "shape"} for p in pairs]


def _coco(spec, images, categories, keep) -> dict:
    annotations = []
    entries = []
    for image_id, (file_name, size, objects) in enumerate(images, start=1):
        entries.append({"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]})
        for obj in objects:
            if not keep(obj):
                continue
            x1, y1, x2, y2 = obj["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": obj["category_id"],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": obj["area"], "iscrowd": 0,
                                "segmentation": [obj["polygon"]],
                                "attributes": {k: obj[k] for k in ("colour", "shape", "texture", "size")}})
    return {"info": {"description": "fgdense shapes world", "seed": spec.seed}, "images": entries,
            "annotations": annotations, "categories": categories}


def _finehard(spec: WorldSpec, images, chinese: bool, rng) -> list[dict]:
    names = {p: category_name(*p, chinese) for p in spec.seen}
    records = []
    for file_name, size, objects in images:
        if not objects:
            continue
        width, height = size
        boxes = []
        for obj in objects:
            own = names[(obj["colour"], obj["shape"])]
            others = [n for p, n in names.items() if n != own]
            negatives = [others[i % len(others)] for i in rng.permutation(max(len(others), 10))[:10]]
            x1, y1, x2, y2 = obj["bbox"]
            boxes.append({"bbox": [x1 / width, y1 / height, x2 / width, y2 / height], "short_expr": own,
                          "long_expr": describe(obj, chinese), "flag_short_neg": 1, "short_expr_negs": negatives})
        named = [names[(o["colour"], o["shape"])] for o in objects]
        long_names = [describe(o, chinese) for o in objects]
        if chinese:
            caption, short = "一张灰色背景的图片，上面有" + "、".join(long_names), "、".join(named)
        else:
            caption, short = "a picture on a grey background showing " + ", ".join(long_names), ", ".join(named)
        records.append({"f_path": file_name, "caption": caption, "short_caption": short, "is_cn": chinese,
                        "bbox_info": boxes})
    return records


def make_shapes_world(out_dir, spec: WorldSpec | None = None, progress: bool = False, **changes) -> dict:
    """Write the world under ``out_dir`` (see the module docstring) and return its paths.

    ``changes`` override :class:`WorldSpec` fields (``num_train=40``, ``seed=3``, ...). The returned
    dict names: ``root``, ``train_images``, ``val_images``, ``train_ann``, ``val_ann``,
    ``val_novel_ann``, ``names_file``, ``classes``, ``train_masks``, ``val_masks``, and ``finehard``
    (``ann_file``, ``image_root``, ``image_root_cn`` for the FineHARD dataset); plus counts.
    """
    from tqdm import tqdm

    spec = spec or WorldSpec()
    if changes:
        spec = WorldSpec(**{**spec.__dict__, **changes})
    spec.check()
    out = Path(out_dir)
    rng = np.random.default_rng(spec.seed)
    palette = _voc_palette()
    written = {}
    for split, count, combos in (("train", spec.num_train, spec.seen), ("val", spec.num_val, spec.combos)):
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "masks").mkdir(parents=True, exist_ok=True)
        images = []
        for index in tqdm(range(count), desc=f"drawing {split}", disable=not progress, unit="image"):
            image, labels, objects = draw_image(spec, combos, rng)
            stem = f"{split}_{index:05d}"
            image.save(out / split / "images" / f"{stem}.png")
            mask = Image.fromarray(labels)
            mask.putpalette(palette)  # an "L" image becomes a palette ("P") image
            mask.save(out / split / "masks" / f"{stem}.png")
            images.append((f"{stem}.png", image.size, objects))
        written[split] = images

    held = {tuple(p) for p in spec.held_out}
    seen_cats, all_cats = _categories(spec, spec.seen), _categories(spec, spec.combos)
    is_novel = lambda obj: (obj["colour"], obj["shape"]) in held  # noqa: E731
    files = {
        out / "train" / "instances.json": _coco(spec, written["train"], seen_cats, lambda o: True),
        out / "val" / "instances.json": _coco(spec, written["val"], seen_cats, lambda o: not is_novel(o)),
        out / "val" / "instances_novel.json": _coco(spec, written["val"], all_cats, is_novel),
    }
    for path, data in files.items():
        path.write_text(json.dumps(data), encoding="utf-8")
    names = [{"id": k + 1, "name": category_name(c, s), "synonyms": [f"{c} {SHAPES[s][1]}"],
              "name_zh": category_name(c, s, chinese=True), "held_out": (c, s) in held}
             for k, (c, s) in enumerate(spec.combos)]
    (out / "names.json").write_text(json.dumps(names, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "classes.txt").write_text("\n".join(["background"] + [category_name(*p) for p in spec.combos]) + "\n",
                                     encoding="utf-8")
    finehard = out / "finehard"
    finehard.mkdir(exist_ok=True)
    en = _finehard(spec, written["train"], False, rng)
    cn = _finehard(spec, written["train"], True, rng)
    (finehard / "en.jsonl").write_text("".join(json.dumps(r) + "\n" for r in en), encoding="utf-8")
    (finehard / "cn.json").write_text(json.dumps(cn, ensure_ascii=False), encoding="utf-8")
    train_images = str(out / "train" / "images")
    return {
        "root": str(out), "train_images": train_images, "val_images": str(out / "val" / "images"),
        "train_ann": str(out / "train" / "instances.json"), "val_ann": str(out / "val" / "instances.json"),
        "val_novel_ann": str(out / "val" / "instances_novel.json"), "names_file": str(out / "names.json"),
        "classes": str(out / "classes.txt"), "train_masks": str(out / "train" / "masks"),
        "val_masks": str(out / "val" / "masks"),
        "finehard": {"ann_file": str(finehard), "image_root": train_images, "image_root_cn": train_images},
        "categories": len(spec.combos), "seen_categories": len(spec.seen),
        "train_boxes": len(files[out / "train" / "instances.json"]["annotations"]),
        "val_boxes": len(files[out / "val" / "instances.json"]["annotations"]),
        "val_novel_boxes": len(files[out / "val" / "instances_novel.json"]["annotations"]),
    }
