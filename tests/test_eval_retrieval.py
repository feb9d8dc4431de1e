"""Retrieval evaluation: every protocol's file read as its official script reads it, and the recalls equal
to the official formulation computed independently (benchmarks/reference.py), exactly."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.reference import official_recalls, official_retrieval
from conftest import CHECKPOINT
from fgdense import Embedder, FGCLIP2ImageProcessor, FGCLIP2Model, load_tokenizer
from fgdense.errors import DatasetError
from fgdense.evaluation.retrieval import evaluate_retrieval, recalls

ROOT = Path(__file__).resolve().parents[1]
# What each official script does (fgclip2/eval/*.py and scripts/eval/eval.sh), written here independently of
# fgdense's protocol table: (walk type, lower-cased).
OFFICIAL = {"coco": ("short", True), "flickr": ("short", True), "coco-cn": ("short", True),
            "flickr-cna": ("short", False), "dci": ("long", True), "share4v": ("long", True),
            "lit-cn": ("long", False)}
WORDS = ["Red", "car", "猫", "Blue", "sky", "一只狗", "Tree", "house", "河流", "Green", "boat", "山"]


@pytest.fixture(scope="module")
def parts():
    return (FGCLIP2Model.from_pretrained(CHECKPOINT), FGCLIP2ImageProcessor.from_pretrained(CHECKPOINT),
            load_tokenizer(CHECKPOINT))


def make_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        h, w = rng.integers(24, 70, 2)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        name = f"{i:012d}.jpg"
        Image.fromarray(pixels).save(folder / name, quality=95)
        names.append(name)
    return names


def captions_for(count: int, per_image, seed: int = 1) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[" ".join(rng.choice(WORDS, 4)) + f" {i}.{j}" for j in range(per_image(i))] for i in range(count)]


def write_set(root: Path, protocol: str):
    """The protocol's file, the images folder, and (image path, captions the official script keeps) pairs."""
    images = root / "images"
    if protocol in ("coco", "flickr", "flickr-cna", "share4v"):
        names = make_images(images, 11)
        caps = captions_for(11, lambda i: 6 if i % 3 == 0 else 5)
        if protocol == "coco":  # ids out of order in the file; the script sorts them
            ids = [50 - 3 * i for i in range(11)]
            data = {"images": [{"id": ids[i], "file_name": n} for i, n in enumerate(names)],
                    "annotations": [{"id": 100 * i + j, "image_id": ids[i], "caption": c}
                                    for i, cs in enumerate(caps) for j, c in enumerate(cs)]}
            ann = root / "captions.json"
            ann.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
            order = sorted(range(11), key=lambda i: ids[i])
            return ann, images, [(images / names[i], caps[i][:5]) for i in order]
        if protocol == "flickr":
            ann = root / "flickr_test.json"
            ann.write_text(json.dumps([{"image": n, "caption": c} for n, c in zip(names, caps)], ensure_ascii=False))
            return ann, images, [(images / n, c) for n, c in zip(names, caps)]
        if protocol == "flickr-cna":
            lines = [f"{n[:-4]}#{j}\t{c}" for n, cs in zip(names, caps) for j, c in enumerate(cs)]
            ann = root / "cna.txt"
            ann.write_text("\n".join(lines) + "\n", encoding="utf-8")
            return ann, images, [(images / n, c) for n, c in zip(names, caps)]
        data = [{"image": f"sam/{n}", "conversations": [{"value": "<image>"}, {"value": c[0]}]}
                for n, c in zip(names, caps)]
        ann = root / "share4v.json"
        ann.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return ann, images, [(images / n, c[:1]) for n, c in zip(names, caps)]
    if protocol == "coco-cn":
        names = make_images(images / "val2014", 9)
        caps = captions_for(9, lambda i: 6)
        lines = [f"COCO_val2014_{n[:-4]}#zhm#{j} {c}" for n, cs in zip(names, caps) for j, c in enumerate(cs)]
        ann = root / "pair.txt"
        ann.write_text("header line of another shape\n" + "\n".join(lines) + "\n", encoding="utf-8")
        pairs = [(images / "val2014" / f"COCO_val2014_{n}", c[:5]) for n, c in zip(names, caps)]
        for n in names:
            (images / "val2014" / n).rename(images / "val2014" / f"COCO_val2014_{n}")
        return ann, images, pairs
    names = make_images(images, 10)
    caps = captions_for(10, lambda i: 1)
    if protocol == "dci":
        ann = root / "annotations"
        ann.mkdir()
        for n, c in zip(names, caps):
            (ann / f"{n}.json").write_text(json.dumps({"image": n, "extra_caption": c[0]}, ensure_ascii=False))
        return ann, images, [(images / names[i], caps[i]) for i in sorted(range(10), key=lambda i: f"{names[i]}.json")]
    # lit-cn: absolute image paths, captions as written
    ann = root / "image_caption.txt"
    ann.write_text("".join(f"{images / n}\t{c[0]}\n" for n, c in zip(names, caps)), encoding="utf-8")
    return ann, root, [(images / n, c) for n, c in zip(names, caps)]


@pytest.mark.parametrize("protocol", ["coco", "flickr", "coco-cn", "flickr-cna", "dci", "share4v", "lit-cn"])
def test_recalls_equal_the_official_protocol(tmp_path, parts, protocol):
    model, processor, tokenizer = parts
    ann, images, pairs = write_set(tmp_path, protocol)
    report = evaluate_retrieval(Embedder(*parts, precision="fp32"), ann, images, protocol, out=tmp_path / "out",
                                progress=False)
    expected = official_retrieval(model, processor, tokenizer, pairs, *OFFICIAL[protocol])
    ranks = json.loads((tmp_path / "out" / "ranks.json").read_text(encoding="utf-8"))
    # Every query's rank, not only the recalls: a wrong casing, caption or walk type moves them.
    assert (ranks["i2t"], ranks["t2i"]) == (expected.pop("i2t_ranks"), expected.pop("t2i_ranks"))
    assert {k: report[k] for k in expected} == expected
    assert report["images"] == len(pairs) and report["captions"] == sum(len(c) for _, c in pairs)
    assert 0 < report["i2t_r10"] and report["i2t_r1"] <= report["i2t_r5"] <= report["i2t_r10"]


def test_ties_count_right_and_recalls_match_the_loops_without_ties(parts):
    model = parts[0]
    rng = np.random.default_rng(3)
    images = rng.normal(size=(7, 8)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts = rng.normal(size=(15, 8)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    owner = [i % 7 for i in range(15)]
    import torch

    logits = torch.from_numpy(texts @ images.T) * model.logit_scale.exp().float() + model.logit_bias.float()
    expected = official_recalls(torch.sigmoid(logits.T), owner)
    del expected["i2t_ranks"], expected["t2i_ranks"]
    assert recalls(model, images, texts, owner) == expected
    # A caption equal to another image's caption ties with it: right at R@1.
    tied = np.stack([images[0], images[0], images[1]])
    assert recalls(model, tied, tied, [0, 1, 2])["t2i_r1"] == 1.0


def test_the_tool_writes_the_report_resumes_and_refuses_bad_files(tmp_path):
    ann, images, pairs = write_set(tmp_path, "flickr")
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "tools" / "eval_retrieval.py"), "--ann", str(ann), "--protocol", "flickr",
               "--images", str(images), "--model", str(CHECKPOINT), "--out", str(out), "--device", "cpu", "--quiet",
               "--workers", "0"]
    first = subprocess.run(command + ["--plot"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    report = json.loads((out / "report.json").read_text())
    ranks = json.loads((out / "ranks.json").read_text(encoding="utf-8"))
    assert len(ranks["t2i_best"]) == len(ranks["texts"]) == 59 and Image.open(out / "plot.png").size[1] > 400
    worst = max(range(59), key=lambda t: ranks["t2i"][t])
    assert ranks["t2i"][worst] > 0 and ranks["t2i_best"][worst] != ranks["owner"][worst]
    assert {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "images", "captions"} <= set(report)
    assert report["images"] == 11 and report["captions"] == 59
    (out / "report.json").unlink()
    records = {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")} == records  # all skipped
    assert json.loads((out / "report.json").read_text())["i2t_r1"] == report["i2t_r1"]
    bad = tmp_path / "bad.txt"
    bad.write_text("only-one-field\n")
    failed = subprocess.run(command[:2] + ["--ann", str(bad), "--protocol", "lit-cn", "--out", str(tmp_path / "o2"),
                                           "--model", str(CHECKPOINT), "--device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and failed.stderr.startswith("error: ") and "line 1" in failed.stderr
    assert failed.stderr.count("\n") == 1 and not (tmp_path / "o2").exists()


def test_a_missing_image_is_left_out_with_its_captions(tmp_path, parts):
    ann, images, pairs = write_set(tmp_path, "flickr")
    pairs[4][0].unlink()
    report = evaluate_retrieval(Embedder(*parts, precision="fp32"), ann, images, "flickr", progress=False)
    assert report["images"] == 10 and report["images_skipped"] == 1
    assert report["skipped_by_reason"] == {"missing_image": 1}
    assert report["captions"] == sum(len(c) for i, (_, c) in enumerate(pairs) if i != 4)
    with pytest.raises(DatasetError, match="no image with a caption"):
        empty = tmp_path / "empty.json"
        empty.write_text("[]")
        evaluate_retrieval(Embedder(*parts), empty, images, "flickr", progress=False)


def test_a_chinese_caption_keeps_to_its_column(monkeypatch):
    """Captions were wrapped at 48 characters whatever their width: 48 Chinese characters are ~670 px,
    drawn under the thumbnails beside them (the column is 420 px); a cut caption now ends in "\u2026"."""
    from PIL import ImageDraw

    from fgdense.evaluation.retrieval_plot import TEXT_WIDTH, worst_queries
    from fgdense.io.fonts import lettering_for

    caption = "一只猫坐在红色的沙发上，旁边有一个蓝色的杯子和一本打开的书" * 8
    ranks = {"images": ["/nonexistent.png"], "images_dir": "/tmp", "t2i": [5], "texts": [caption], "owner": [0],
             "t2i_best": [0]}
    words = []
    original = ImageDraw.ImageDraw.multiline_text
    monkeypatch.setattr(ImageDraw.ImageDraw, "multiline_text",
                        lambda self, xy, text, *a, **k: (words.append(text), original(self, xy, text, *a, **k))[1])
    worst_queries(ranks)
    face = lettering_for(None, [caption]).font(14)
    (shown,) = words
    assert all(8 + face.getlength(line) <= TEXT_WIDTH - 8 for line in shown.split("\n")), shown
    assert shown.endswith("\u2026")


def test_the_tool_never_writes_over_an_image_it_reads(tmp_path):
    """--out the images folder with an image named plot.png: the picture replaced it. One line, before the
    model loads (a model that is not there is never reached)."""
    Image.new("RGB", (16, 16), "red").save(tmp_path / "plot.png")
    ann = tmp_path / "captions.txt"
    ann.write_text("plot.png\ta red square\n", encoding="utf-8")
    before = (tmp_path / "plot.png").read_bytes()
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_retrieval.py"), "--ann", str(ann), "--protocol",
                           "lit-cn", "--images", str(tmp_path), "--out", str(tmp_path), "--plot", "--model",
                           str(tmp_path / "never-loaded")], capture_output=True, text=True, timeout=300)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(err) == 1 and "plot.png is an image the run reads" in err[0], err
    assert (tmp_path / "plot.png").read_bytes() == before


def test_a_run_with_no_usable_image_draws_an_empty_sheet(tmp_path):
    """Every image missing: --plot read a ranks.json the run had not written (a traceback, or an earlier
    run's ranks drawn as this run's)."""
    ann = tmp_path / "captions.txt"
    ann.write_text("gone.png\ta red square\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "ranks.json").write_text('{"stale": true}', encoding="utf-8")  # an earlier run's
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_retrieval.py"), "--ann", str(ann), "--protocol",
                           "lit-cn", "--images", str(tmp_path), "--out", str(out), "--plot", "--model", str(CHECKPOINT),
                           "--quiet", "--workers", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert json.loads((out / "ranks.json").read_text())["texts"] == [] and (out / "plot.png").is_file()
