"""The pictures read well at any size: text fits its space and scales with the image, every label has its
own colour, labelled boxes draw in time linear in their number, and every label is drawn (Chinese too)."""

import itertools
import time

import numpy as np
import pytest
import supervision as sv
from PIL import Image, ImageDraw

from fgdense.io.box_pictures import draw_boxes, score_labels
from fgdense.io.fonts import REPLACEMENT, Lettering, bundled_font, choose_font
from fgdense.io.segment_pictures import PALETTE, heatmap_grid, label_colours, label_map_image, overlay
from fgdense.segment import SegmentationResult

LONG_EN = "a small brown dog with a red collar sitting beside an old door"[:60]
LONG_ZH = ("一只戴着红色项圈的棕色小狗安静地坐在一扇旧木门旁边等待它的主人回家" * 2)[:60]


class Drawn:
    """Every text a picture draws: its bounding box (measured with the font it is drawn in), the text, the font."""

    def __init__(self):
        self.texts = []
        self.pasted = []  # (x0, y0, x1, y1) of each image pasted into a picture (the heatmap panels)

    def boxes(self):
        return [box for box, _, _ in self.texts]

    def joined(self):
        return "".join(text for _, text, _ in self.texts)


@pytest.fixture
def drawn(monkeypatch):
    record = Drawn()
    text, paste = ImageDraw.ImageDraw.text, Image.Image.paste

    def recording_text(self, xy, text_=None, fill=None, font=None, anchor=None, *args, **kwargs):
        text_ = kwargs.pop("text", text_)
        record.texts.append((self.textbbox(xy, text_, font=font, anchor=anchor), text_, font))
        return text(self, xy, text_, fill, font, anchor, *args, **kwargs)

    def recording_paste(self, image, box=None, *args, **kwargs):
        if isinstance(image, Image.Image) and isinstance(box, tuple) and len(box) == 2:
            record.pasted.append((box[0], box[1], box[0] + image.width, box[1] + image.height))
        return paste(self, image, box, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", recording_text)
    monkeypatch.setattr(Image.Image, "paste", recording_paste)
    return record


def overlapping(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_apart_and_inside(boxes, size):
    for a, b in itertools.combinations(boxes, 2):
        assert not overlapping(a, b), f"texts at {a} and {b} overlap"
    for box in boxes:
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= size[0] and box[3] <= size[1], f"text at {box} is cut"


def squeezed(text):
    return "".join(text.split())


def result_for(labels, height, width, scores=True):
    """Each label a vertical stripe, the top fifth background; random scores (or none to look at)."""
    k = len(labels)
    label_map = (np.arange(width)[None].repeat(height, 0) * k // width).astype(np.int32)
    label_map[: height // 5] = -1
    if scores:
        values = np.random.default_rng(0).uniform(0.1, 0.7, (k, height, width)).astype(np.float32)
    else:  # the overlay does not look at them: no memory for a large image
        values = np.broadcast_to(np.float32(0.5), (k, height, width))
    return SegmentationResult(list(labels), values, label_map)


def test_heatmap_titles_of_a_small_image_neither_overlap_nor_are_cut(drawn):
    labels = ["purple triangle", "green circle", LONG_EN, LONG_ZH, "red square"]
    image = Image.new("RGB", (134, 139), (120, 160, 200))
    picture = heatmap_grid(image, result_for(labels, 139, 134))

    assert len(drawn.pasted) == len(labels)
    assert_apart_and_inside(drawn.boxes(), picture.size)
    for text_box, panel in itertools.product(drawn.boxes(), drawn.pasted):
        assert not overlapping(text_box, panel), f"title at {text_box} runs into the panel at {panel}"
    for label in labels:  # wrapped, but whole
        assert squeezed(label) in squeezed(drawn.joined())


@pytest.mark.parametrize("labels", [["cat", "dog"], [LONG_EN, LONG_ZH, "cat"]])
def test_legend_text_scales_with_the_image_and_fits(drawn, labels):
    heights = {}
    for width, height in [(100, 100), (4000, 3000)]:
        drawn.texts.clear()
        image = Image.new("RGB", (width, height), (90, 90, 90))
        picture = overlay(image, result_for(labels, height, width, scores=False))
        legend = [box for box in drawn.boxes() if box[0] >= width]
        assert len(legend) == len(drawn.texts) >= len(labels) + 1  # every text is in the legend strip
        assert_apart_and_inside(legend, picture.size)
        for label in labels + ["background"]:
            assert squeezed(label) in squeezed(drawn.joined())
        # A long label wraps: the legend stays within a few times the text size of the image.
        text_height = max(box[3] - box[1] for box in legend)
        assert picture.width - width <= 25 * text_height
        heights[height] = text_height

    assert heights[100] >= 8  # readable on a tiny image
    assert heights[3000] >= 3000 / 80  # and on a large one, when it is shown at screen size
    assert heights[3000] >= 4 * heights[100]


def test_every_label_has_its_own_colour_in_the_overlay_and_the_label_map():
    count = 30
    result = result_for([f"label {k}" for k in range(count)], 40, 8 * count)
    picture = np.asarray(overlay(Image.new("RGB", (8 * count, 40)), result, alpha=1.0))
    seen = picture[30, 4::8][:count].astype(int)  # the middle of each label's stripe: its colour, untinted

    distance = np.linalg.norm(seen[:, None] - seen[None], axis=2) + np.eye(count) * 1e9
    assert distance.min() > 20, "two labels look alike"  # (Tableau 20 itself has two 25 apart)
    assert (seen[:20] == PALETTE).all()  # the first 20 keep their colours
    palette = np.array(label_map_image(result).getpalette()[: 3 * (count + 1)]).reshape(-1, 3)
    assert (palette[0] == 0).all() and (palette[1:] == seen).all()


def test_colours_are_distinct_for_the_most_labels_a_label_map_holds():
    colours = label_colours(255).astype(int)
    assert len({tuple(c) for c in colours}) == 255
    assert (label_colours(255) == label_colours(255)).all()  # deterministic
    distance = np.linalg.norm(colours[:, None] - colours[None], axis=2) + np.eye(255) * 1e9
    assert distance.min() > 15
    assert np.linalg.norm(colours, axis=1).min() > 15  # none is the background's black


def random_boxes(count, size=(1280, 960), seed=0):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, [size[0] - 80, size[1] - 60], (count, 2))
    xyxy = np.concatenate([corner, corner + rng.uniform(10, [80, 60], (count, 2))], axis=1)
    names = np.array(["cat", "dog", "电脑", "bicycle wheel"])[rng.integers(0, 4, count)]
    confidence = rng.uniform(0.1, 1.0, count)
    found = sv.Detections(xyxy=xyxy.astype(np.float32), confidence=confidence.astype(np.float32),
                          class_id=rng.integers(0, 4, count), data={"class_name": names})
    return found, score_labels(names, confidence)


def test_drawing_labelled_boxes_is_linear_in_their_number():
    image = Image.new("RGB", (1280, 960), (128, 128, 128))
    lettering = choose_font(["cat", "dog", "电脑", "bicycle wheel"])
    draw_boxes(image, *random_boxes(10), font=lettering)  # fonts and colours loaded once

    def seconds(count):
        found, captions = random_boxes(count)
        start = time.perf_counter()
        draw_boxes(image, found, captions, font=lettering)
        return time.perf_counter() - start

    few, many = min(seconds(500) for _ in range(2)), min(seconds(3000) for _ in range(2))
    assert many < 10
    assert many <= 6 * few + 0.5, f"500 boxes {few:.2f} s, 3000 boxes {many:.2f} s"


def test_every_box_is_drawn_and_uncaptioned_ones_are_counted(drawn):
    # A 20 x 15 grid of boxes that do not touch, each in its label's colour.
    cells = [(x, y) for y in range(15) for x in range(20)]
    xyxy = np.array([[64 * x + 8, 64 * y + 8, 64 * x + 56, 64 * y + 56] for x, y in cells], np.float32)
    found = sv.Detections(xyxy=xyxy, confidence=np.linspace(0.1, 0.9, len(cells)).astype(np.float32),
                          class_id=np.arange(len(cells)) % 25)
    picture = draw_boxes(Image.new("RGB", (1280, 960)), found, [f"box {i}" for i in range(len(cells))],
                         max_captions=0)
    pixels = np.asarray(picture)
    colours = label_colours(25)
    for (x0, y0, x1, y1), k in zip(xyxy.astype(int), found.class_id):
        assert (pixels[(y0 + y1) // 2, x1 - 1] == colours[k]).all()  # the right edge, where no caption is
    assert picture.size[0] == 1280 and picture.size[1] > 960  # the note goes below the image
    assert "captions on the 0 most confident of 300 boxes" in drawn.joined()

    drawn.texts.clear()
    draw_boxes(Image.new("RGB", (1280, 960)), found, [f"box {i}" for i in range(len(cells))], max_captions=3)
    assert {text for _, text, _ in drawn.texts} >= {"box 299", "box 298", "box 297"}  # the most confident
    assert "box 296" not in drawn.joined()


def test_boxes_draw_every_caption_in_the_chosen_font_chinese_included(drawn):
    found, captions = random_boxes(6, size=(400, 300))
    lettering = choose_font(captions)
    picture = draw_boxes(Image.new("RGB", (400, 300)), found, captions, font=lettering)
    assert picture.size == (400, 300)  # every box captioned: no note
    assert sorted(text for _, text, _ in drawn.texts) == sorted(captions)
    assert {font.path for _, _, font in drawn.texts} == {lettering.path}

    drawn.texts.clear()
    lacking = Lettering(bundled_font(), missing="脑")  # a font without one of the characters
    draw_boxes(Image.new("RGB", (400, 300)), *random_boxes(6, size=(400, 300)), font=lacking)
    drawn_texts = [text for _, text, _ in drawn.texts]
    assert any(REPLACEMENT in text for text in drawn_texts) and not any("脑" in text for text in drawn_texts)


@pytest.mark.parametrize("picture", [overlay, heatmap_grid])
def test_segment_pictures_draw_every_label_in_the_chosen_font(drawn, picture):
    labels = ["猫", "一只蹲在窗台上的橘色猫咪", "cat"]
    lettering = choose_font(labels)
    picture(Image.new("RGB", (64, 48)), result_for(labels, 48, 64), font=lettering)
    for label in labels:
        assert squeezed(label) in squeezed(drawn.joined())
    assert {font.path for _, _, font in drawn.texts} == {lettering.path}


def test_the_font_fallback_takes_the_system_font_with_the_glyphs_not_the_first(monkeypatch, recwarn):
    """Characters the bundled font lacks (Armenian, a chess piece): the system font drawing the most of
    them wins, wherever it stands in the list; with none drawing all, the best one and one warning."""
    import os

    import matplotlib

    from fgdense.io import fonts

    folder = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")
    display, serif, sans = (os.path.join(folder, f"DejaVu{name}.ttf") for name in ("SansDisplay", "Serif", "Sans"))
    text = ["Ա ♞"]
    assert fonts.missing_characters(fonts.bundled_font(), text[0]) == "Ա♞"
    assert fonts.missing_characters(display, text[0]) == "Ա♞" and fonts.missing_characters(serif, text[0]) == "♞"
    monkeypatch.setattr(fonts, "_system_fonts", lambda: [display, serif, sans])
    choice = fonts.choose_font(text)
    assert choice.path == sans and choice.missing == "" and not recwarn.list
    monkeypatch.setattr(fonts, "_system_fonts", lambda: [display, serif])
    choice = fonts.choose_font(text)
    assert choice.path == serif and choice.missing == "♞" and len(recwarn.list) == 1


def test_a_font_that_is_a_folder_is_named_as_one(tmp_path):
    """--font FOLDER answered "font FOLDER does not exist", which it does."""
    from fgdense.errors import FontError

    with pytest.raises(FontError, match="is a folder"):
        choose_font(["a"], str(tmp_path))
