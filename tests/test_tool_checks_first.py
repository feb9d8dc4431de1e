"""Every tool answers an input mistake before torch or transformers load: the check costs a fraction of a
second, not the 5 to 20 seconds those imports take. Each tool runs here with stand-in ``torch`` and
``transformers`` packages that stop the process if anything imports them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # tool -> (arguments after the tool, words the one-line error must hold)
    "segment-missing-image": ("segment.py", ["MISSING/x.jpg", "--labels", "cat"], "does not exist"),
    "segment-bad-label": ("segment.py", ["IMAGE", "--labels", "cat", "cat"], "duplicate label"),
    "segment-missing-model": ("segment.py", ["IMAGE", "--labels", "cat", "--model", "MISSING/ckpt"], "does not exist"),
    "classify-missing-image": ("classify_boxes.py", ["MISSING/x.jpg", "--labels", "cat", "--boxes", "[[0, 0, 9, 9]]"],
                               "does not exist"),
    "ground-missing-image": ("ground.py", ["MISSING/x.jpg", "--phrases", "a cat"], "does not exist"),
    "masks-missing-image": ("classify_masks.py", ["MISSING/x.jpg", "--labels", "cat", "--masks", "MISSING/m.png"],
                            "does not exist"),
    "eval-boxclass-missing-ann": ("eval_boxclass.py", ["--ann", "MISSING/a.json", "--images", "IMAGES"], "does not exist"),
    "eval-grounding-missing-ann": ("eval_grounding.py", ["--ann", "MISSING/a.json", "--images", "IMAGES"],
                                   "does not exist"),
    "eval-segmentation-missing-ann": ("eval_segmentation.py", ["--ann", "MISSING/a.json", "--images", "IMAGES"],
                                      "does not exist"),
    "eval-fgovd-missing-ann": ("eval_fgovd.py", ["--ann", "MISSING/a.jsonl", "--images", "IMAGES"], "does not exist"),
    "eval-retrieval-missing-ann": ("eval_retrieval.py", ["--ann", "MISSING/a.json", "--protocol", "coco",
                                                         "--images", "IMAGES"], "does not exist"),
    # dci's annotations are a folder: it reaches the protocol's reader (which finds no captions in it)
    "eval-retrieval-dci-folder": ("eval_retrieval.py", ["--ann", "IMAGES", "--protocol", "dci", "--images", "IMAGES"],
                                  "holds no image with a caption"),
    "eval-zeroshot-missing-images": ("eval_zeroshot.py", ["--images", "MISSING/val"], "does not exist"),
    "eval-zeroshot-plot-missing-font": ("eval_zeroshot.py", ["--images", "IMAGES", "--plot", "--font", "MISSING/f.ttf"],
                                        "font"),
    "search-missing-images": ("search.py", ["index", "MISSING/photos"], "does not exist"),
    "classify-missing-boxes-file": ("classify_boxes.py", ["IMAGE", "--labels", "cat", "--boxes", "MISSING/b.json"],
                                    "does not exist"),
    "search-query-missing-index": ("search.py", ["query", "MISSING/index", "a cat"], "is not a search index"),
    "train-missing-config": ("train_stage2.py", ["MISSING/config.py"], "does not exist"),
}


@pytest.fixture(scope="module")
def no_heavy(tmp_path_factory):
    """A folder of stand-ins: importing torch or transformers from it ends the process with a marker."""
    folder = tmp_path_factory.mktemp("no_heavy")
    for name in ("torch", "transformers"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f"raise SystemExit('HEAVY IMPORT: {name}')\n")
    return folder


@pytest.mark.parametrize("case", list(CASES))
def test_the_tool_answers_before_the_heavy_imports(case, no_heavy, tmp_path):
    tool, argv, words = CASES[case]
    image = ROOT / "docs" / "images" / "cat.jpg"
    argv = [a.replace("MISSING", str(tmp_path / "missing")).replace("IMAGES", str(image.parent))
            .replace("IMAGE", str(image)) for a in argv]
    out_flag = "--work-dir" if tool == "train_stage2.py" else "--out"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / tool), *argv, out_flag, str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PYTHONPATH": f"{no_heavy}:{ROOT}", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert "HEAVY IMPORT" not in done.stderr, f"{tool} imported {done.stderr.strip()[-60:]} before checking"
    assert done.returncode != 0 and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out").exists()
