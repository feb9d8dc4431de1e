"""The optional FAISS backend of tools/search.py: a flat index answers as the numpy default does, an ivfpq
index finds what it holds, and a FAISS index that no longer matches its arrays is refused."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINT

faiss = pytest.importorskip("faiss")

from fgdense import Embedder  # noqa: E402
from fgdense.search.query import SearchIndex, search, top_k  # noqa: E402
from fgdense.search.vector_library import build_faiss, faiss_top_k  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def planted(folder: Path, rows: int, dim: int = 32, seed: int = 0) -> SimpleNamespace:
    """A search index's arrays without a model: normalised random rows."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return SimpleNamespace(folder=folder, images=vectors, regions=np.zeros((0, dim), np.float32))


def test_a_flat_faiss_index_answers_as_the_numpy_default(tmp_path):
    index = planted(tmp_path / "index", 3000)
    assert [p.name for p in build_faiss(index, "flat")] == ["images.faiss"]
    for query in np.random.default_rng(1).standard_normal((5, 32)).astype(np.float32):
        query = query / np.linalg.norm(query)
        rows, scores = faiss_top_k(index, "images", query, 10)
        expected_rows, expected_scores = top_k(index.images, query, 10)
        assert rows.tolist() == expected_rows.tolist()
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_an_ivfpq_index_finds_the_rows_it_holds(tmp_path):
    index = planted(tmp_path / "index", 2000, dim=32)
    build_faiss(index, "ivfpq")
    found = [i in faiss_top_k(index, "images", index.images[i], 10)[0].tolist() for i in range(0, 2000, 40)]
    assert np.mean(found) >= 0.9
    with pytest.raises(ValueError, match="at least 1000 rows"):
        build_faiss(planted(tmp_path / "small", 100), "ivfpq")


def test_a_faiss_index_of_another_build_is_refused(tmp_path):
    build_faiss(planted(tmp_path / "index", 1200), "flat")
    grown = planted(tmp_path / "index", 1300)
    with pytest.raises(ValueError, match="another version"):
        faiss_top_k(grown, "images", grown.images[0], 5)


def test_the_tool_builds_and_queries_a_faiss_index_with_the_default_s_answers(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "photos").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"p{i}.png")

    def tool(*args):
        return subprocess.run([sys.executable, str(ROOT / "tools" / "search.py"), *map(str, args)],
                              capture_output=True, text=True, timeout=300)

    index = tmp_path / "index"
    done = tool("index", tmp_path / "photos", "--out", index, "--regions", "--faiss", "flat", "--model", CHECKPOINT,
                "--device", "cpu", "--quiet", "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert (index / "images.faiss").is_file() and (index / "regions.faiss").is_file()
    embedder = Embedder.from_pretrained(CHECKPOINT, device="cpu")
    done = tool("query", index, "一只猫", "--top-k", 3, "--out", tmp_path / "answer", "--device", "cpu",
                "--backend", "faiss")
    assert done.returncode == 0, done.stderr
    by_tool = json.loads((tmp_path / "answer" / "results.json").read_text(encoding="utf-8"))["results"]
    for regions in (False, True):
        found = by_tool if not regions else search(embedder, SearchIndex.open(index), "一只猫", 3, True, "faiss")
        expected = search(embedder, SearchIndex.open(index), "一只猫", 3, regions)  # the numpy default
        assert [(h["image"], h.get("xyxy")) for h in found] == [(h["image"], h.get("xyxy")) for h in expected]
        key = "cosine" if regions else "score"
        np.testing.assert_allclose([h[key] for h in found], [h[key] for h in expected], atol=1e-5)
    # Built again without --faiss: the FAISS files of the earlier build go, and asking for them is one line.
    assert tool("index", tmp_path / "photos", "--out", index, "--model", CHECKPOINT, "--device", "cpu", "--quiet",
                "--workers", "0").returncode == 0
    assert not (index / "images.faiss").exists()
    with pytest.raises(ValueError, match="no FAISS index"):
        search(embedder, SearchIndex.open(index), "cat", 3, backend="faiss")
