"""The demo's engine (no browser, no gradio): the feature cache, the jobs' outputs, the one-line errors,
and tools/demo.py's checks before it serves anything."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgdense.demo.cache import FeatureCache, cached_task
from fgdense.demo.engine import (DemoEngine, add_corner, boxes_from_text, guarded, released_size, split_labels,
                                 split_phrases)
from fgdense.errors import BoxError, LabelError

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "docs" / "images" / "cat.jpg"
BOXES = "[[40, 30, 260, 290], [0, 0, 451, 120]]"


@pytest.fixture(scope="module")
def engine(tiny_checkpoint, tmp_path_factory):
    engine = DemoEngine.from_pretrained(tiny_checkpoint, device="cpu", max_num_patches=256,
                                        work_dir=tmp_path_factory.mktemp("demo-runs"))
    yield engine
    engine.close()


def test_changing_labels_on_a_seen_image_does_not_recompute_its_features(engine, tmp_path):
    engine.cache.clear()
    start = engine.cache.computed
    engine.segment(CAT, "电脑 cat")
    assert engine.cache.computed == start + 1
    # New labels, background labels, thresholds, refinement; then the other tasks on the same image.
    engine.segment(CAT, "dog|狗, red mug", background="wall", threshold=None, refine=True)
    engine.segment(CAT, "cat", threshold=0.05)
    engine.classify(CAT, BOXES, "电脑 cat", top_k=1)
    engine.ground(CAT, "the cat's left eye\n一只猫")
    engine.ground(CAT, "一只猫", BOXES)
    engine.point_similarity(CAT, 100, 80, budget=256)
    assert engine.cache.computed == start + 1
    # The cache knows the picture by its content: the same photo uploaded again under another name is a hit.
    copy = tmp_path / "again.jpg"
    shutil.copy(CAT, copy)
    assert "image features reused" in engine.segment(copy, "cat").message
    assert engine.cache.computed == start + 1
    # A new budget, or a new picture, is new work.
    engine.text_heatmaps(CAT, "电脑 cat", budget=576)
    assert engine.cache.computed == start + 2
    Image.open(CAT).transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "flipped.png")
    assert "image features computed" in engine.segment(tmp_path / "flipped.png", "cat").message
    assert engine.cache.computed == start + 3


def test_the_cache_is_least_recently_used_and_computes_a_repeated_image_once(tiny_checkpoint):
    from fgdense.segment import Segmenter

    cache = FeatureCache(capacity=2)
    task = cached_task(Segmenter).from_pretrained(tiny_checkpoint, device="cpu", feature_cache=cache,
                                                  max_num_patches=64)
    images = [Image.new("RGB", (40, 30), colour) for colour in ("red", "green", "blue")]
    first = task.image_features([images[0], images[0]])
    assert cache.computed == 1 and cache.reused == 1 and first[0] is first[1]
    task.image_features(images[1:])  # three entries for two places: the red one goes
    assert len(cache) == 2 and cache.computed == 3
    task.image_features([images[2]])
    assert cache.computed == 3
    task.image_features([images[0]])
    assert cache.computed == 4
    task.image_features([images[0]], task.configured(max_num_patches=128))
    assert cache.computed == 5
    # Another precision is other arithmetic: its own entry, never fp32's features handed back.
    fp32 = task.image_features([images[0]], task.configured(max_num_patches=128, precision="fp32"))[0]
    bf16 = task.image_features([images[0]], task.configured(max_num_patches=128, precision="bf16"))[0]
    assert cache.computed == 7 and bf16 is not fp32
    assert 0 < (bf16.grid - fp32.grid).abs().max() < 0.1


def test_the_jobs_write_the_tools_files(engine):
    answer = engine.segment(CAT, "电脑 cat", background="wall")
    summary = json.loads(answer.json.read_text(encoding="utf-8"))
    assert summary["labels"] == ["电脑", "cat"] and summary["background_labels"] == ["wall"]
    assert summary["image"] == "cat.jpg"
    label_map = Image.open(answer.label_map)
    assert label_map.mode == "P" and label_map.size == (451, 300)
    assert np.asarray(label_map).max() <= 2
    assert Image.open(answer.overlay).width > 451 and answer.heatmaps.is_file()
    assert [row[0] for row in answer.table] == ["电脑", "cat", "(background)"]

    boxes = engine.classify(CAT, BOXES, "电脑 cat", top_k=2)
    assert boxes.headers == ["box", "x1", "y1", "x2", "y2", "top 1", "top 2"]
    assert len(boxes.table) == 2 and {cell.split(" (")[0] for cell in boxes.table[0][5:]} == {"电脑", "cat"}
    assert len(json.loads(boxes.json.read_text(encoding="utf-8"))["boxes"]) == 2

    grounded = engine.ground(CAT, "电脑\ncat")
    assert [row[0] for row in grounded.table] == ["电脑", "cat"] and grounded.heatmaps.is_file()
    among = engine.ground(CAT, "cat", BOXES)
    assert json.loads(among.json.read_text(encoding="utf-8"))["mode"] == "candidate boxes"

    point = engine.point_similarity(CAT, 200, 150)
    assert point.picture.is_file() and "patch row" in point.message
    texts = engine.text_heatmaps(CAT, "电脑 cat", budget=256)
    assert [row[0] for row in texts.table] == ["电脑", "cat"]


def test_old_run_folders_are_removed(tiny_checkpoint, tmp_path):
    from fgdense.demo.workdir import KEEP_RUNS

    small = DemoEngine.from_pretrained(tiny_checkpoint, device="cpu", max_num_patches=64, work_dir=tmp_path)
    for _ in range(KEEP_RUNS + 3):
        small.point_similarity(CAT, 10, 10)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == KEEP_RUNS
    small.close()
    assert not tmp_path.exists()


@pytest.mark.parametrize("job, args, expected", [
    ("segment", (CAT, ""), "type at least one label"),
    ("segment", (CAT, "   "), "type at least one label"),
    ("segment", (CAT, "cat\x1b[31m dog"), "control characters"),
    ("segment", (CAT, "cat\tdog"), "control characters (U+0009)"),
    ("segment", (CAT, "cat cat"), "duplicate label"),
    ("segment", (CAT, "cat", "cat"), "duplicate label (including background labels)"),
    ("segment", (None, "cat"), "upload an image first"),
    ("segment", ("/nonexistent/photo.jpg", "cat"), "upload it again"),
    ("segment", (CAT, "x" * 5000), "at most 4000"),
    ("classify", (CAT, "", "cat"), "give at least one box"),
    ("classify", (CAT, "[[1, 2, 3]]", "cat"), "box 0 is not [x1, y1, x2, y2]"),
    ("classify", (CAT, "[[1, 2", "cat"), "the boxes field is not valid JSON"),
    ("classify", (CAT, "[[500, 500, 600, 600]]", "cat"), "entirely outside the 451x300 image"),
    ("classify", (CAT, "[[50, 50, 10, 10]]", "cat"), "inverted"),
    ("classify", (CAT, "[[NaN, 0, 10, 10]]", "cat"), "non-finite"),
    ("ground", (CAT, "\n\n"), "type at least one phrase"),
    ("ground", (CAT, "cat", "{\"boxes\": 3}"), "expected a list"),
    ("point_similarity", (CAT, 9999, 5), "outside the 451x300 image"),
    ("text_heatmaps", (CAT, "cat", 12345), "the patch budget must be one of"),
])
def test_mistakes_are_one_line_and_the_engine_goes_on(engine, job, args, expected):
    answer, message = guarded(getattr(engine, job), *args)
    assert answer is None
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message
    assert expected in message, message
    assert guarded(engine.segment, CAT, "cat")[0] is not None  # and the next request works


def test_unreadable_and_too_large_images_are_named_by_their_file_name(engine, tmp_path, tiny_checkpoint):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a JPEG")
    _, message = guarded(engine.segment, bad, "cat")
    assert message.startswith("error: cannot read holiday.jpg as an image") and str(tmp_path) not in message

    strict = DemoEngine.from_pretrained(tiny_checkpoint, device="cpu", max_num_patches=64, work_dir=tmp_path / "w",
                                        max_upload_bytes=10_000, max_pixels=100_000)
    _, message = guarded(strict.segment, CAT, "cat")
    assert "the image cat.jpg is 31 KB; the demo takes images up to 10 KB" in message
    strict.uploads.max_upload_bytes = 10**9
    Image.new("RGB", (400, 300)).save(tmp_path / "wide.png")
    _, message = guarded(strict.segment, tmp_path / "wide.png", "cat")
    assert "is 400x300 pixels; the demo takes images up to 0.1 megapixels" in message
    strict.close()


def test_an_unexpected_failure_is_one_line_too(caplog):
    def broken():
        raise RuntimeError("CUDA out of memory\nwith details")

    answer, message = guarded(broken)
    assert answer is None and message == ("error: unexpected RuntimeError: CUDA out of memory with details "
                                          "(details in the server's log)")
    assert "Traceback" in caplog.text  # the whole story goes to the server's log


def test_labels_are_split_as_people_type_them():
    assert split_labels("电脑 cat") == ["电脑", "cat"]
    assert split_labels("  电脑　cat|猫 ") == ["电脑", "cat|猫"]  # an ideographic space separates too
    assert split_labels("red mug, 咖啡杯，the cat") == ["red mug", "咖啡杯", "the cat"]
    assert split_labels("sky\nwall") == ["sky", "wall"]
    assert split_phrases("the cat's left eye\r\n一只猫, 白色的\n") == ["the cat's left eye",
                                                                   "一只猫, 白色的"]
    with pytest.raises(LabelError):
        split_labels(", ,")


def test_boxes_are_drawn_by_two_clicks_typed_or_loaded(engine, tmp_path):
    pending, text, message = add_corner(None, 260, 290, "")
    assert pending == (260, 290) and text == "" and "opposite corner" in message
    pending, text, message = add_corner(pending, 40.4, 30, text)
    assert pending is None and json.loads(text) == [[40.4, 30, 260, 290]] and message.startswith("box 1 added")
    pending, text, message = add_corner((5, 5), 5, 50, text)
    assert pending is None and json.loads(text) == [[40.4, 30, 260, 290]] and "zero area" in message

    assert boxes_from_text("", required=False) is None
    with pytest.raises(BoxError):
        boxes_from_text("[]")
    listed = tmp_path / "boxes.json"
    listed.write_text(json.dumps({"boxes": [{"xyxy": [1, 2, 30, 40]}]}))  # tools/classify_boxes.py's own output
    assert json.loads(engine.boxes_file(listed)) == [[1, 2, 30, 40]]
    preview = engine.preview_boxes(CAT, "[[40, 30, 260, 290]]")
    assert Image.open(preview).size == (451, 300) and preview != engine.view(CAT)
    # Shown pictures are files written once: the page never gets one that is being rewritten.
    written = preview.stat().st_mtime_ns
    assert engine.preview_boxes(CAT, "[[40, 30, 260, 290]]") == preview and preview.stat().st_mtime_ns == written
    assert engine.preview_boxes(CAT, "") == engine.view(CAT)


def test_the_page_says_a_tiny_checkpoint_shows_the_format(engine):
    assert released_size(engine.model.config) is None
    notice = engine.notice()
    assert "tiny or random" in notice and "format" in notice and "256 patches" in notice
    from fgdense.config import architecture_config

    assert released_size(architecture_config("base")) == "base"
    assert engine.budget_choices == [256, 576, 1024, 2304, 4096]  # a CPU stops at 4096


def test_the_notice_names_each_tab_s_budget_by_default(tiny_checkpoint, tmp_path):
    default = DemoEngine.from_pretrained(tiny_checkpoint, device="cpu", work_dir=tmp_path / "w")
    assert default.budgets == {"Segment": 1024, "Label boxes": None, "Ground": None}
    assert ("Segment at 1024 patches; Label boxes and Ground at the checkpoint's own patch budget"
            in default.notice())
    default.close()


def test_stopping_waits_for_the_running_job_and_refuses_new_ones(tiny_checkpoint, tmp_path):
    """Stopping while a job runs (a Segment click, then Ctrl-C) waits for it: a job thread still inside
    torch when the interpreter exits aborts it ('terminate called without an active exception')."""
    import threading

    busy = DemoEngine.from_pretrained(tiny_checkpoint, device="cpu", max_num_patches=64, work_dir=tmp_path / "w")
    started, go_on = threading.Event(), threading.Event()
    answers = []

    def progress(fraction, text):
        if text.startswith("image features"):  # inside the job, before the model pass
            started.set()
            go_on.wait(30)

    worker = threading.Thread(target=lambda: answers.append(guarded(busy.segment, CAT, "cat", progress=progress)))
    worker.start()
    assert started.wait(30) and busy.busy()
    busy.stop()
    assert guarded(busy.segment, CAT, "cat") == (None, "error: the demo is stopping; start it again to go on")
    closer = threading.Thread(target=busy.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive() and (tmp_path / "w").is_dir()  # still waiting for the job
    go_on.set()
    worker.join(30)
    closer.join(30)
    assert not closer.is_alive() and not (tmp_path / "w").exists()
    assert answers[0][0] is not None and answers[0][1] == ""  # the running job finished whole
    assert not busy.busy() and busy.close(timeout=1)


# ---------------------------------------------------------------------------------------- the tool
def tool(*args, timeout=60, env=None):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def test_the_tool_answers_help_at_once_and_refuses_mistakes_before_loading(tmp_path):
    done = tool("--help")
    assert done.returncode == 0 and "--host" in done.stdout and "127.0.0.1" in done.stdout
    done = tool("--port", "0")
    assert done.returncode == 1 and done.stderr.strip() == "error: --port must be from 1 to 65535, got 0"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = tool("--port", str(port), "--model", str(tmp_path / "no-such-checkpoint"))
    assert done.returncode == 1 and done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert len(done.stderr.strip().splitlines()) == 1
    done = tool("--max-patches", "99999")
    assert done.returncode == 1 and "--max-patches must be a whole number" in done.stderr


def test_without_gradio_the_tool_says_how_to_install_it(tmp_path):
    # A module named gradio that fails to import stands for a machine without the extra.
    (tmp_path / "gradio").mkdir()
    (tmp_path / "gradio" / "__init__.py").write_text("raise ImportError('no gradio here')\n")
    done = tool("--help", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert done.returncode == 0  # --help never needs it
    done = tool("--model", "fg-tiny", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert done.returncode == 1 and done.stderr.strip() == ('error: the demo needs gradio 6: pip install -e ".[demo]" '
                                                            '(or pip install "gradio>=6,<7")')
