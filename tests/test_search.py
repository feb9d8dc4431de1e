"""tools/search.py: an index of a folder and a manifest (image and region embeddings equal to Embedder's),
resumed without recomputing, queried in Chinese and English with the same answers as brute force."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINT
from fgdense import Embedder
from fgdense.search import grid_boxes, query as query_module
from fgdense.search.query import SearchIndex, search, top_k

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "search.py"


def run(*args):
    done = subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=300)
    return done


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Five generated images in a folder, two more named by a JSONL manifest with their boxes; indexed once."""
    root = tmp_path_factory.mktemp("collection")
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    paths = []
    for i in range(7):
        h, w = rng.integers(30, 90, 2)
        path = root / ("photos" if i < 5 else "") / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    boxes = {5: [[1, 1, 20, 20], [5, 3, 28, 29]], 6: [[0, 0, 10, 12]]}
    manifest = root / "more.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(paths[i]), "boxes": b}) + "\n" for i, b in boxes.items()))
    index = root / "index"
    done = run("index", root / "photos", manifest, "--out", index, "--regions", "--model", CHECKPOINT,
               "--device", "cpu", "--quiet", "--workers", "0", "--batch-size", "3")
    assert done.returncode == 0, done.stderr
    return root, paths, boxes, index


def test_the_index_holds_embedders_embeddings(collection):
    root, paths, boxes, index = collection
    found = SearchIndex.open(index)
    embedder = Embedder.from_pretrained(CHECKPOINT, device="cpu")
    assert [Path(i["path"]).name for i in found.meta["images"]] == [p.name for p in paths]
    np.testing.assert_allclose(found.images, embedder.embed_images_batch(paths).vectors, atol=1e-6)
    per_image = [boxes[i] if i in boxes else grid_boxes(*Image.open(p).size[::-1]) for i, p in enumerate(paths)]
    regions = embedder.embed_regions_batch(paths, per_image)
    np.testing.assert_allclose(found.regions, np.concatenate([r.vectors for r in regions]), atol=1e-6)
    assert [r["image"] for r in found.meta["regions"]] == [i for i, b in enumerate(per_image) for _ in b]
    assert found.meta["regions"][-1]["xyxy"] == [0.0, 0.0, 10.0, 12.0]
    assert len(grid_boxes(40, 60)) == 1 + 9 + 25


def test_building_again_skips_every_image_and_gives_the_same_index(collection):
    root, paths, boxes, index = collection
    before = np.load(index / "images.npy")
    stamps = {p: p.stat().st_mtime_ns for p in (index / "parts").glob("*.json")}
    done = run("index", root / "photos", root / "more.jsonl", "--out", index, "--regions", "--model", CHECKPOINT,
               "--device", "cpu", "--quiet", "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert {p: p.stat().st_mtime_ns for p in (index / "parts").glob("*.json")} == stamps
    np.testing.assert_array_equal(np.load(index / "images.npy"), before)


@pytest.mark.parametrize("text, regions", [("一只红色的猫", False), ("a blue square", True)])
def test_a_query_gives_the_brute_force_answer_as_json_and_a_sheet(collection, tmp_path, text, regions):
    root, paths, boxes, index = collection
    out = tmp_path / "answer"
    done = run("query", index, text, "--top-k", 4, "--out", out, "--device", "cpu", *(["--regions"] if regions else []))
    assert done.returncode == 0, done.stderr
    hits = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]
    found, embedder = SearchIndex.open(index), Embedder.from_pretrained(CHECKPOINT, device="cpu")
    if regions:
        cos = found.regions @ embedder.embed_texts([text], walk_type="box").vectors[0]
        best = np.argsort(-cos, kind="stable")[:4]
        assert [h["xyxy"] for h in hits] == [found.meta["regions"][i]["xyxy"] for i in best]
    else:
        scores = embedder.scores(np.asarray(found.images), embedder.embed_texts([text]))[:, 0]
        best = np.argsort(-scores, kind="stable")[:4]
        assert [h["image"] for h in hits] == [found.meta["images"][i]["path"] for i in best]
        np.testing.assert_allclose([h["score"] for h in hits], scores[best], atol=1e-6)
    assert Image.open(out / "sheet.png").size[0] > 400


def test_top_k_over_blocks_equals_one_sort(monkeypatch):
    rng = np.random.default_rng(1)
    vectors, query = rng.normal(size=(1000, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)
    monkeypatch.setattr(query_module, "BLOCK", 64)
    rows, scores = top_k(vectors, query, 7)
    expected = np.argsort(-(vectors @ query), kind="stable")[:7]
    assert rows.tolist() == expected.tolist()


def test_mistakes_are_one_line(collection, tmp_path):
    root, paths, boxes, index = collection
    for args, words in [(("query", root / "photos", "cat", "--out", tmp_path / "a"), "not a search index"),
                        (("query", index, " ", "--out", tmp_path / "b"), "empty"),
                        (("find", index), "index or query")]:
        done = run(*args)
        assert done.returncode != 0 and words in done.stderr and done.stderr.count("\n") <= 3, done.stderr
    plain = tmp_path / "plain"
    assert run("index", root / "photos", "--out", plain, "--model", CHECKPOINT, "--device", "cpu", "--quiet",
               "--workers", "0").returncode == 0
    embedder = Embedder.from_pretrained(CHECKPOINT, device="cpu")
    with pytest.raises(Exception, match="holds no regions"):
        search(embedder, SearchIndex.open(plain), "cat", 3, regions=True)
    done = run("query", plain, "cat", "--out", plain, "--device", "cpu")  # results beside the index: fine
    assert done.returncode == 0, done.stderr


def test_the_search_benchmark_runs_at_a_toy_size():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "benchmark_search.py"), "--images", "6",
                           "--queries", "2", "--regions"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["images"] == 6 and result["regions"] == 6 * 35
    assert result["index_s"] > 0 and result["query_ms_median"] > 0 and "CPU:" in done.stdout
