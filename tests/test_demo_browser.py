"""The demo as a person uses it: tools/demo.py serves the page, a real headless Chromium opens it, uploads
a photo, types labels, clicks, and waits for the pictures and tables; one test per tab, one for mistakes.

Driven by playwright on the system's Chromium (Debian's ``chromium`` package; playwright cannot
download its own browser here). Skipped, with the reason, only where no Chromium can be found or
playwright / gradio are not installed. Set ``FGDENSE_DEMO_SCREENSHOTS=FOLDER`` to keep the screenshots
(docs/demo.md's come from ``FGDENSE_DEMO_SCREENSHOTS=docs/images``).
"""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "docs" / "images" / "cat.jpg"
BOXES = "[[40, 30, 260, 290], [0, 0, 451, 120]]"
# As this machine's Chromium must be started: no sandbox as root, and no background traffic to the web.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 180  # seconds for the server to load the model and listen (a loaded 2-core machine)
JOB_TIMEOUT = 90_000  # milliseconds for one job to show its answer
SHOTS = os.environ.get("FGDENSE_DEMO_SCREENSHOTS")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    pytest.importorskip("gradio", reason='the demo extra is not installed: pip install -e ".[demo]"')
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason='playwright is not installed: pip install -e ".[test]"')
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium on this machine to drive (Debian: apt-get install chromium chromium-driver)")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=executable, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900}, locale="en-US")
        context.set_default_timeout(JOB_TIMEOUT)
        yield context
        context.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path):
    """tools/demo.py as the README starts it (``--model fg-tiny``), on a free loopback port, with its own
    temporary folder ``folder/tmp``; returns (process, its output lines so far, its address)."""
    from fgdense.tiny import make_tiny_checkpoint

    if not (folder / "fg-tiny").is_dir():
        make_tiny_checkpoint(folder / "fg-tiny")
    port = free_port()
    (folder / "tmp").mkdir(exist_ok=True)
    # No GRADIO_TEMP_DIR: where gradio keeps its files is the demo's business (and it must clean them up).
    env = {**{k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}, "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1", "TMPDIR": str(folder / "tmp")}
    process = subprocess.Popen([sys.executable, str(ROOT / "tools" / "demo.py"), "--model", "fg-tiny",
                                "--device", "cpu", "--port", str(port)], cwd=folder, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not any(f"fgdense demo on {url}" in line for line in lines):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the demo server did not start:\n" + "".join(lines))
        time.sleep(0.2)
    return process, lines, url


def stop_server(process, lines: list[str], folder: Path, how=signal.SIGTERM) -> str:
    """Stop the server as a person does and check it stopped cleanly, leaving nothing in its temporary
    folder: neither its run files nor gradio's (which leaves a folder per file it ever held)."""
    process.send_signal(how)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        code = "still running after 60 s"
    time.sleep(0.5)  # the reader thread takes the last lines
    output = "".join(lines)
    assert code == 0, output
    assert "stopped: the demo server is closed" in output and "Traceback" not in output, output
    assert "terminate called" not in output, output
    left = sorted(str(p.relative_to(folder)) for p in (folder / "tmp").rglob("*"))
    assert not left, f"the server left {len(left)} file(s) and folder(s) behind: {left[:10]}"
    # gradio writes .pyi stubs beside the source of component subclasses: the page must not make any.
    assert not list((ROOT / "fgdense").rglob("*.pyi"))
    return output


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    """The demo server for the tab tests; stopped, and checked to stop cleanly, at the end."""
    folder = tmp_path_factory.mktemp("demo-server")
    process, lines, url = start_server(folder)
    yield url
    stop_server(process, lines, folder)


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    page.goto(server)
    page.wait_for_selector("#seg-image")
    yield page
    page.close()


# ------------------------------------------------------------------------------------------------ helpers
def expect():
    from playwright.sync_api import expect

    return expect


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def upload(page, prefix: str, path: Path = CAT) -> None:
    page.set_input_files(f"#{prefix}-image input[type=file]", str(path))


def wait_status(page, prefix: str, pattern: str) -> str:
    status = page.locator(f"#{prefix}-status textarea")
    try:
        expect()(status).to_have_value(re.compile(pattern), timeout=JOB_TIMEOUT)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{evidence(page)}") from None
    return status.input_value()


def wait_picture(page, elem_id: str, replacing: str | None = None) -> str:
    """Until the picture's image has loaded in the browser (not just its element), and is not the one whose
    address was ``replacing``; returns its address."""
    try:
        page.wait_for_function("([id, old]) => { const img = document.querySelector(`#${id} img`); "
                               "return img !== null && img.src !== old && img.complete && img.naturalWidth > 0; }",
                               arg=[elem_id, replacing], timeout=JOB_TIMEOUT)
        return page.locator(f"#{elem_id} img").get_attribute("src")
    except Exception as err:
        raise AssertionError(f"no picture in #{elem_id}: {err}\n{evidence(page)}") from None


def evidence(page) -> str:
    """A screenshot of the page as the test gave up, for whoever reads the failure."""
    path = Path(tempfile.mkdtemp(prefix="fgdense-demo-failure-")) / "page.png"
    page.screenshot(path=str(path), full_page=True)
    return f"the page at that moment: {path}"


def click_pixel(page, elem_id: str, x: float, y: float) -> None:
    """Click image pixel (x, y) of the picture in ``elem_id``, placed as gradio places it: scaled down to fit
    (never up) and centred."""
    image = page.locator(f"#{elem_id} img")
    box = image.bounding_box()
    natural_w, natural_h = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    scale = min(box["width"] / natural_w, box["height"] / natural_h, 1.0)
    left = (box["width"] - natural_w * scale) / 2
    top = (box["height"] - natural_h * scale) / 2
    image.click(position={"x": left + x * scale, "y": top + y * scale})


def near(values, expected, tolerance: float = 1.5) -> bool:
    return len(values) == len(expected) and all(abs(float(v) - e) <= tolerance for v, e in zip(values, expected))


def screenshot(page, name: str, element: str | None = None) -> None:
    """Keep a screenshot (the whole page, or one element of it) when FGDENSE_DEMO_SCREENSHOTS names a folder.

    Saved with 256 colours: a quarter of the bytes for the docs, and the page still reads the same."""
    if not SHOTS:
        return
    shot = (page.locator(element) if element else page).screenshot(**({} if element else {"full_page": True}))
    picture = Image.open(io.BytesIO(shot)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    picture.save(Path(SHOTS) / f"demo_{name}.png", optimize=True)


# -------------------------------------------------------------------------------------------------- tests
def test_segment_tab(page):
    notice = page.locator("#notice")
    expect()(notice).to_contain_text("tiny or random")
    expect()(notice).to_contain_text("shows the format of the results, not the model")
    upload(page, "seg")
    wait_status(page, "seg", r"^image cat\.jpg: 451x300 pixels$")
    page.locator("#seg-labels textarea").fill("电脑 cat")
    page.locator("#seg-run").click()
    wait_status(page, "seg", r"^2 label\(s\) at 1024 patches; threshold 0\.100; image features (computed|reused)$")
    first = wait_picture(page, "seg-overlay")
    wait_picture(page, "seg-heatmaps")
    table = page.locator("#seg-table")
    for name in ("电脑", "cat", "(background)"):
        expect()(table).to_contain_text(name)
    # The files offered for download are the tools' own: the palette label map and the JSON.
    href = page.locator("#seg-labelmap a").first.get_attribute("href")
    assert href.endswith("/cat_labels.png")
    label_map = Image.open(io.BytesIO(page.request.get(href).body()))
    assert label_map.mode == "P" and label_map.size == (451, 300)
    href = page.locator("#seg-json a").first.get_attribute("href")
    summary = json.loads(page.request.get(href).text())
    assert summary["labels"] == ["电脑", "cat"] and summary["image"] == "cat.jpg"

    # A threshold from the slider, and refinement: the same image's features are reused.
    page.locator("#seg-mode").get_by_label("number", exact=True).check()
    page.locator("#seg-threshold input[type=number]").fill("0.022")
    page.locator("#seg-threshold input[type=number]").press("Enter")
    page.locator("#seg-refine input").check()
    page.locator("#seg-run").click()
    wait_status(page, "seg", r"^2 label\(s\) at 1024 patches; threshold 0\.022; image features reused$")
    wait_picture(page, "seg-overlay", replacing=first)
    screenshot(page, "segment")
    # No threshold, and a background label.
    page.locator("#seg-mode").get_by_label("none", exact=True).check()
    page.locator("#seg-background textarea").fill("wall")
    page.locator("#seg-run").click()
    wait_status(page, "seg", r"^2 label\(s\) at 1024 patches; threshold none; image features reused$")
    expect()(table).to_contain_text("(background)")


def test_label_boxes_tab(page, tmp_path):
    open_tab(page, "Label boxes")
    upload(page, "box")
    wait_picture(page, "box-view")
    # The photo is shown once: the picture to click on takes the uploader's place.
    expect()(page.locator("#box-image")).to_be_hidden()
    # Drawn: two clicks at opposite corners.
    # (A click lands on a whole screen pixel: the image pixel it hits may be one off the one aimed at.)
    click_pixel(page, "box-view", 40, 30)
    corner = wait_status(page, "box", r"^first corner at \(\d+, \d+\)")
    assert near(re.findall(r"\d+", corner)[:2], [40, 30]), corner
    click_pixel(page, "box-view", 260, 290)
    wait_status(page, "box", r"^box 1 added")
    drawn = json.loads(page.locator("#box-boxes textarea").input_value())
    assert len(drawn) == 1 and near(drawn[0], [40, 30, 260, 290]), drawn
    # Loaded: a boxes file as tools/classify_boxes.py reads it (its own output form here).
    listed = tmp_path / "boxes.json"
    listed.write_text(json.dumps({"boxes": [{"xyxy": [0, 0, 451, 120]}]}))
    page.set_input_files("#box-file input[type=file]", str(listed))
    wait_status(page, "box", r"^boxes loaded from boxes\.json$")
    assert json.loads(page.locator("#box-boxes textarea").input_value()) == [[0, 0, 451, 120]]
    # Typed.
    page.locator("#box-boxes textarea").fill(BOXES)
    page.locator("#box-labels textarea").fill("电脑 cat")
    page.locator("#box-run").click()
    wait_status(page, "box", r"^2 box\(es\), 2 label\(s\) at the checkpoint's own patch budget; "
                             r"image features (computed|reused)$")
    wait_picture(page, "box-picture")
    table = page.locator("#box-table")
    for text in ("电脑 (", "cat (", "top 2", "260"):
        expect()(table).to_contain_text(text)
    screenshot(page, "boxes")
    # Other boxes: the answers to the old ones go (a page never shows answers to questions no longer asked).
    page.locator("#box-boxes textarea").fill("[[0, 0, 100, 100]]")
    expect()(page.locator("#box-picture img")).to_have_count(0)
    expect()(table).not_to_contain_text("260")
    # Another photo: the uploader comes back in the picture's place.
    page.locator("#box-other").click()
    expect()(page.locator("#box-image")).to_be_visible()
    expect()(page.locator("#box-view")).to_be_hidden()


def test_ground_tab(page):
    open_tab(page, "Ground")
    upload(page, "gr")
    wait_status(page, "gr", r"^image cat\.jpg")
    page.locator("#gr-phrases textarea").fill("电脑\ncat")
    page.locator("#gr-run").click()
    wait_status(page, "gr", r"^2 phrase\(s\) grounded in boxes proposed from the heatmaps at the checkpoint's "
                            r"own patch budget; "
                            r"image features (computed|reused)$")
    wait_picture(page, "gr-picture")
    wait_picture(page, "gr-heatmaps")
    table = page.locator("#gr-table")
    for name in ("电脑", "cat"):
        expect()(table).to_contain_text(name)
    screenshot(page, "ground")
    page.locator("#gr-boxes textarea").fill(BOXES)
    page.locator("#gr-run").click()
    wait_status(page, "gr", r"^2 phrase\(s\) grounded among 2 candidate box\(es\)")
    expect()(table).to_contain_text("[40, 30, 260, 290]")


def test_dense_explorer_tab(page):
    open_tab(page, "Dense explorer")
    upload(page, "ex")
    wait_picture(page, "ex-view")
    expect()(page.locator("#ex-image")).to_be_hidden()  # the photo once
    click_pixel(page, "ex-view", 300, 120)
    wait_status(page, "ex", r"^similarity of patch row \d+, column \d+ \(at 30\d, 1[12]\d\) to every patch of "
                            r"the \d+x\d+ grid")
    wait_picture(page, "ex-point")
    # Text heatmaps at a patch budget chosen in the page.
    page.locator("#ex-budget input").click()
    page.get_by_role("option", name="256", exact=True).click()
    page.locator("#ex-texts textarea").fill("电脑 cat")
    page.locator("#ex-run").click()
    wait_status(page, "ex", r"^2 text\(s\) over the \d+x\d+ grid \(\d+ patches, budget 256\)")
    wait_picture(page, "ex-heatmaps")
    table = page.locator("#ex-table")
    for name in ("电脑", "cat"):
        expect()(table).to_contain_text(name)
    screenshot(page, "explorer")


def test_mistakes_show_one_line_and_the_page_keeps_working(page, tmp_path):
    page.locator("#seg-run").click()
    wait_status(page, "seg", r"^error: upload an image first$")
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"not a picture at all")
    upload(page, "seg", bad)
    wait_status(page, "seg", r"^error: cannot read holiday\.jpg as an image")
    upload(page, "seg")
    wait_status(page, "seg", r"^image cat\.jpg")
    page.locator("#seg-labels textarea").fill("")
    page.locator("#seg-run").click()
    wait_status(page, "seg", r"^error: type at least one label")
    page.locator("#seg-labels textarea").fill("cat, cat")
    page.locator("#seg-run").click()
    wait_status(page, "seg", r"^error: duplicate label 'cat'")
    screenshot(page, "error", "#seg-status")
    open_tab(page, "Label boxes")
    page.locator("#box-boxes textarea").fill("[[500, 500, 600, 600]]")
    page.locator("#box-labels textarea").fill("cat")
    page.locator("#box-run").click()
    wait_status(page, "box", r"^error: box 0 lies entirely outside the 451x300 image")
    open_tab(page, "Segment")
    page.locator("#seg-labels textarea").fill("电脑 cat")
    page.locator("#seg-run").click()
    wait_status(page, "seg", r"^2 label\(s\)")
    wait_picture(page, "seg-overlay")


def test_ctrl_c_right_after_a_segment_click_stops_in_order(browser, tmp_path):
    """Ctrl-C while a job may be running: the job ends, then the server closes and removes every file,
    gradio's included (it aborted once in ten stops: 'terminate called without an active exception')."""
    process, lines, url = start_server(tmp_path)
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_selector("#seg-image")
        upload(page, "seg")
        wait_status(page, "seg", r"^image cat\.jpg")
        page.locator("#seg-labels textarea").fill("电脑 cat")
        page.locator("#seg-run").click()
        time.sleep(0.2)
        stop_server(process, lines, tmp_path, signal.SIGINT)
    finally:
        page.close()
        if process.poll() is None:
            process.kill()
