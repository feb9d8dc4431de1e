"""The demo's web page (gradio): four tabs over a :class:`~fgdense.demo.engine.DemoEngine`.

gradio is the optional ``demo`` extra (``pip install -e ".[demo]"``); only this module imports it, and
without it :func:`fgdense.demo.require_gradio` says how to get it in one line. The page holds no logic of its own:
each button calls one engine job through :func:`~fgdense.demo.engine.guarded`, whose one line goes
into the tab's status box, so a mistake shows there and the server keeps serving.

It works offline: no analytics, no fonts from the web, no share links; it binds where it is told
(the tool's default is loopback).
"""

# No `from __future__ import annotations` here: gradio reads the handlers' `gr.SelectData` annotations
# as objects to know which handlers take the click's coordinates.
import functools
import os

from ..cli import one_line
from ..errors import FGDenseError
from ..io.fonts import bundled_font
from . import require_gradio
from .engine import DemoEngine, add_corner, guarded

# Never fetched from the web. "fgdense CJK" is the bundled font, served by the page itself, so Chinese labels
# read on a machine with no CJK font (the pictures draw with the same font).
# It comes first: in Chromium's text boxes a system font listed before it (system-ui, ui-sans-serif) claims
# CJK characters it cannot draw and shows empty boxes. Its Latin letters are Noto Sans's.
PAGE_FONT = "fgdense CJK"
LOCAL_FONTS = [PAGE_FONT, "sans-serif"]
LOCAL_MONO = ["ui-monospace", "monospace", PAGE_FONT]
UPLOAD_BACKSTOP = 4  # gradio refuses uploads beyond this many times the engine's limit (the engine's is clearer)

LABELS_HELP = ("Labels in Chinese or English, separated by spaces (电脑 cat), or by commas to keep spaces inside "
               "one (red mug, 咖啡杯); cat|猫 averages synonyms.")


def _forgiving(image):
    """``image`` (a gr.Image input) handing on the uploaded file even when gradio cannot open it, so the
    engine's check names the problem in the status line (gradio's own failure is a bare 'Error' pop-up).

    Wrapped on the instance, not subclassed: gradio writes a .pyi stub beside the source of every
    component subclass, which would put a file into the installed package at run time."""
    original = image.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:
            return str(payload.path) if payload is not None and getattr(payload, "path", None) else None

    image.preprocess = preprocess
    return image


def build_page(engine: DemoEngine):
    """The gradio Blocks of the demo for ``engine`` (not launched)."""
    gr = require_gradio()
    with gr.Blocks(title="fgdense demo: FG-CLIP 2 dense prediction", analytics_enabled=False,
                   delete_cache=(1800, 3600)) as page:
        gr.Markdown("## fgdense: open-vocabulary dense prediction with FG-CLIP 2")
        gr.Markdown(engine.notice(), elem_id="notice")
        with gr.Tabs():
            with gr.Tab("Segment", id="segment"):
                segment = _segment_tab(gr, engine)
            with gr.Tab("Label boxes", id="boxes"):
                boxes = _boxes_tab(gr, engine)
            with gr.Tab("Ground", id="ground"):
                ground = _ground_tab(gr, engine)
            with gr.Tab("Dense explorer", id="explore"):
                explore = _explorer_tab(gr, engine)
        _share_uploads(gr, engine, [segment, boxes, ground, explore])
    return page


def _share_uploads(gr, engine: DemoEngine, tabs: list[dict]) -> None:
    """An upload is checked at once, and a good image goes into the other tabs too (one photo, four jobs)."""
    images = [tab["image"] for tab in tabs]

    def on_upload(path):
        answer, error = guarded(engine.image, path)
        if answer is None:
            return [gr.update()] * (len(images) - 1) + [error]
        line = f"image {os.path.basename(path)}: {answer.width}x{answer.height} pixels"
        return [path] * (len(images) - 1) + [line]

    for tab in tabs:
        # .upload fires on a person's upload only, not when another tab sets the value: no echo.
        others = [c for c in images if c is not tab["image"]]
        tab["image"].upload(on_upload, tab["image"], others + [tab["status"]])


def _answers(gr, group: str, inputs: list, outputs: list, runs: tuple = ()) -> None:
    """Register the jobs ``runs`` ((event, fn, fn_inputs, fn_outputs) each) and make their results vanish
    as soon as an input they came from changes: a page never shows answers to questions no longer asked.

    A change event can arrive after the job it preceded (a field's change is sent when it loses focus, i.e.
    as the button is clicked; the page's own redraws change inputs too). So a job notes the values of
    ``inputs`` it answers as it starts, and a change carrying those values keeps the answer. The jobs and
    the clearing share one queue group of one at a time (``group``), which gradio serves in arrival
    order: a change sent before a job is handled before it, one sent during a job after it; neither can
    overtake the job and clear the answer to a question still asked (CI saw that race)."""
    asked: dict = {}
    queued = {"concurrency_id": group, "concurrency_limit": 1}

    def noting(fn, fn_inputs):
        picks = [fn_inputs.index(component) for component in inputs]

        @functools.wraps(fn)  # gradio reads the signature (its progress argument)
        def job(*args, **kwargs):
            asked["values"] = [args[i] for i in picks]
            return fn(*args, **kwargs)

        return job

    def clear(*values):
        keep = asked.get("values") == list(values)
        return [gr.update() if keep else None for _ in outputs]

    for event, fn, fn_inputs, fn_outputs in runs:
        event(noting(fn, fn_inputs), fn_inputs, fn_outputs, **queued)
    for component in inputs:
        names = {e if isinstance(e, str) else e.event_name for e in type(component).EVENTS}
        # An image the page redraws itself changes too: it counts as a new question when the user uploads
        # or removes one.
        events = [component.upload, component.clear] if "upload" in names else [component.change]
        for event in events:
            event(clear, inputs, outputs, show_progress="hidden", **queued)


def _progress_of(progress):
    return lambda fraction, text: progress(fraction, desc=text)


def _image_input(gr, prefix: str):
    return _forgiving(gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], label="image",
                               elem_id=f"{prefix}-image", height=360))


def _picture(gr, label: str, elem_id: str, show_label: bool = True):
    return gr.Image(label=label, type="filepath", format="png", interactive=False, elem_id=elem_id,
                    buttons=["download", "fullscreen"], show_label=show_label)


def _status(gr, prefix: str):
    return gr.Textbox(label="status", interactive=False, max_lines=3, elem_id=f"{prefix}-status")


def _segment_tab(gr, engine: DemoEngine) -> dict:
    with gr.Row():
        with gr.Column(scale=2):
            image = _image_input(gr, "seg")
            labels = gr.Textbox(label="labels", placeholder="电脑 cat", info=LABELS_HELP, elem_id="seg-labels")
            background = gr.Textbox(label="background labels (optional)", placeholder="wall floor",
                                    info="pixels these labels win are background", elem_id="seg-background")
            auto = engine.auto_threshold
            mode = gr.Radio(["auto", "number", "none"], value="auto", label="background threshold",
                            info=("auto: the threshold the checkpoint was calibrated with, else the model's 50 % match point"
                                  + (f" (cosine {auto:.3f})" if auto is not None else "")
                                  + "; number: the slider; none: every pixel gets its best label"), elem_id="seg-mode")
            value = gr.Slider(-1.0, 1.0, value=round(auto if auto is not None else 0.1, 3), step=0.005,
                              label="threshold (cosine), used with 'number'", elem_id="seg-threshold")
            refine = gr.Checkbox(label="refine: snap mask edges to image edges", value=False, elem_id="seg-refine")
            run = gr.Button("Segment", variant="primary", elem_id="seg-run")
        with gr.Column(scale=3):
            status = _status(gr, "seg")
            overlay = _picture(gr, "overlay", "seg-overlay")
            heatmaps = _picture(gr, "one heatmap per label", "seg-heatmaps", show_label=False)
            table = gr.Dataframe(headers=["label", "area", "mean score", "max score"], interactive=False,
                                 elem_id="seg-table")
            with gr.Row():
                label_map = gr.File(label="label map (PNG: 0 background, k = k-th label)", elem_id="seg-labelmap")
                json_file = gr.File(label="JSON (areas, scores, RLE masks)", elem_id="seg-json")

    def run_segment(path, labels, background, mode, value, refine, progress=gr.Progress()):
        threshold = {"auto": "auto", "none": None}.get(mode, value)
        answer, error = guarded(engine.segment, path, labels, background, threshold, refine, _progress_of(progress))
        if answer is None:
            return error, None, None, None, None, None
        return (answer.message, str(answer.overlay), str(answer.heatmaps), answer.table, str(answer.label_map),
                str(answer.json))

    inputs = [image, labels, background, mode, value, refine]
    results = [overlay, heatmaps, table, label_map, json_file]
    job = (run_segment, inputs, [status, *results])
    _answers(gr, "seg", inputs, results, ((run.click, *job), (labels.submit, *job)))
    return {"image": image, "status": status}


def _clicked_view(gr, prefix: str, label: str):
    """The uploader and, once it holds a good image, the picture to click on in its place (the photo is
    shown once), with a button that brings the uploader back for another photo."""
    image = _image_input(gr, prefix)
    view = gr.Image(label=label, type="filepath", interactive=False, elem_id=f"{prefix}-view", height=360,
                    buttons=["fullscreen"], visible=False)
    other = gr.Button("another image", size="sm", visible=False, elem_id=f"{prefix}-other")
    other.click(lambda: (gr.update(value=None, visible=True), gr.update(visible=False), gr.update(visible=False)),
                None, [image, view, other], queue=False)
    return image, view, other


def _shown(gr, picture, error: str = ""):
    """Updates of (view, uploader, "another image" button, status) for a picture to click on (None: none)."""
    if picture is None:
        return (gr.update(value=None, visible=False), gr.update(visible=True), gr.update(visible=False),
                error or gr.update())
    return (gr.update(value=str(picture), visible=True), gr.update(visible="hidden"), gr.update(visible=True),
            error or gr.update())


def _boxes_tab(gr, engine: DemoEngine) -> dict:
    with gr.Row():
        with gr.Column(scale=2):
            image, view, other = _clicked_view(gr, "box", "boxes: click two opposite corners to draw one")
            text = gr.Textbox(label="boxes (x1, y1, x2, y2 in image pixels)", lines=2,
                              placeholder="[[40, 30, 260, 290], [0, 0, 451, 120]]",
                              info="drawn, typed, or loaded: the JSON tools/classify_boxes.py reads",
                              elem_id="box-boxes")
            with gr.Row():
                boxes_file = gr.File(label="boxes JSON file", file_types=[".json"], elem_id="box-file")
                clear = gr.Button("Clear boxes", elem_id="box-clear")
            labels = gr.Textbox(label="labels", placeholder="电脑 cat", info=LABELS_HELP, elem_id="box-labels")
            top = gr.Slider(1, 10, value=5, step=1, label="top-k labels listed per box", elem_id="box-topk")
            run = gr.Button("Label boxes", variant="primary", elem_id="box-run")
        with gr.Column(scale=3):
            status = _status(gr, "box")
            picture = _picture(gr, "labelled boxes", "box-picture")
            table = gr.Dataframe(headers=["box", "x1", "y1", "x2", "y2", "top 1"], interactive=False,
                                 elem_id="box-table")
            json_file = gr.File(label="JSON (per box: best label, probabilities, top-k)", elem_id="box-json")
    pending = gr.State(None)

    def show_boxes(path, boxes):
        if not path:
            return _shown(gr, None)
        answer, error = guarded(engine.preview_boxes, path, boxes)
        if answer is None:  # boxes still being typed: the bare picture, and what is wrong with them
            answer, _ = guarded(engine.view, path)
        return _shown(gr, answer, error)  # no error: the status keeps what the click or the upload said

    for component in (image, text):
        component.change(show_boxes, [image, text], [view, image, other, status])

    def on_click(path, pending, boxes, evt: gr.SelectData):
        if not path:
            return pending, boxes, "upload an image first"
        answer, error = guarded(add_corner, pending, *evt.index[:2], boxes)
        return answer if answer is not None else (None, boxes, error)

    view.select(on_click, [image, pending, text], [pending, text, status])
    clear.click(lambda: (None, "", "boxes cleared"), None, [pending, text, status])
    boxes_file.upload(_boxes_loader(engine), [boxes_file, text], [text, status])

    def run_boxes(path, boxes, labels, top_k, progress=gr.Progress()):
        answer, error = guarded(engine.classify, path, boxes, labels, top_k, _progress_of(progress))
        if answer is None:
            return error, None, None, None
        return answer.message, str(answer.picture), {"headers": answer.headers, "data": answer.table}, str(answer.json)

    inputs, results = [image, text, labels, top], [picture, table, json_file]
    _answers(gr, "box", inputs, results, ((run.click, run_boxes, inputs, [status, *results]),))
    return {"image": image, "status": status}


def _boxes_loader(engine: DemoEngine):
    def load_boxes(path, current):
        answer, error = guarded(engine.boxes_file, path)
        return (current, error) if answer is None else (answer, f"boxes loaded from {os.path.basename(path)}")

    return load_boxes


def _ground_tab(gr, engine: DemoEngine) -> dict:
    with gr.Row():
        with gr.Column(scale=2):
            image = _image_input(gr, "gr")
            phrases = gr.Textbox(label="phrases, one a line", lines=3, placeholder="the cat's left eye\n一只猫",
                                 elem_id="gr-phrases")
            boxes = gr.Textbox(label="candidate boxes (optional)", lines=2,
                               placeholder="[[40, 30, 260, 290], [0, 0, 451, 120]]",
                               info="empty: boxes are proposed from each phrase's heatmap", elem_id="gr-boxes")
            boxes_file = gr.File(label="candidate boxes JSON file", file_types=[".json"], elem_id="gr-file")
            run = gr.Button("Ground", variant="primary", elem_id="gr-run")
        with gr.Column(scale=3):
            status = _status(gr, "gr")
            picture = _picture(gr, "best box per phrase", "gr-picture")
            heatmaps = _picture(gr, "phrase heatmaps", "gr-heatmaps", show_label=False)
            table = gr.Dataframe(headers=["phrase", "walk", "best box", "score"], interactive=False, elem_id="gr-table")
            json_file = gr.File(label="JSON", elem_id="gr-json")
    boxes_file.upload(_boxes_loader(engine), [boxes_file, boxes], [boxes, status])

    def run_ground(path, phrases, boxes, progress=gr.Progress()):
        answer, error = guarded(engine.ground, path, phrases, boxes, _progress_of(progress))
        if answer is None:
            return error, None, None, None, None
        return answer.message, str(answer.picture), str(answer.heatmaps), answer.table, str(answer.json)

    inputs, results = [image, phrases, boxes], [picture, heatmaps, table, json_file]
    _answers(gr, "gr", inputs, results, ((run.click, run_ground, inputs, [status, *results]),))
    return {"image": image, "status": status}


def _explorer_tab(gr, engine: DemoEngine) -> dict:
    with gr.Row():
        with gr.Column(scale=2):
            image, view, other = _clicked_view(gr, "ex", "click a point: its patch's similarity to every patch")
            budget = gr.Dropdown(engine.budget_choices, value=engine.budget or 1024, label="patch budget",
                                 info=("more patches: finer maps, slower" + ("" if engine.device.type == "cuda" else
                                       "; up to 16384 on a GPU, up to 4096 on this CPU")), elem_id="ex-budget")
            texts = gr.Textbox(label="texts (as labels: spaces or commas between them)", placeholder="电脑 cat",
                               elem_id="ex-texts")
            run = gr.Button("Text heatmaps", variant="primary", elem_id="ex-run")
        with gr.Column(scale=3):
            status = _status(gr, "ex")
            point = _picture(gr, "similarity of the clicked patch to every patch", "ex-point", show_label=False)
            heatmaps = _picture(gr, "text heatmaps", "ex-heatmaps", show_label=False)
            table = gr.Dataframe(headers=["text", "min cosine", "max cosine", "best patch"], interactive=False,
                                 elem_id="ex-table")

    def show_view(path):
        if not path:
            return _shown(gr, None)
        answer, error = guarded(engine.view, path)
        return _shown(gr, answer, error)

    image.change(show_view, image, [view, image, other, status])

    def on_point(path, budget, evt: gr.SelectData, progress=gr.Progress()):
        answer, error = guarded(engine.point_similarity, path, *evt.index[:2], budget, _progress_of(progress))
        return (error, None) if answer is None else (answer.message, str(answer.picture))

    point_job = (view.select, on_point, [image, budget], [status, point])
    _answers(gr, "ex", [image, budget], [point, heatmaps, table], (point_job,))

    def run_texts(path, texts, budget, progress=gr.Progress()):
        answer, error = guarded(engine.text_heatmaps, path, texts, budget, _progress_of(progress))
        return (error, None, None) if answer is None else (answer.message, str(answer.picture), answer.table)

    job = (run_texts, [image, texts, budget], [status, heatmaps, table])
    _answers(gr, "ex", [texts], [heatmaps, table], ((run.click, *job), (texts.submit, *job)))
    return {"image": image, "status": status}


def serve(engine: DemoEngine, host: str = "127.0.0.1", port: int = 7860, quiet: bool = False):
    """Build the page and start serving it without blocking; returns the running Blocks (``.close()`` stops it)."""
    gr = require_gradio()
    # gradio's temporary files (uploads, its copies of pictures) go into the demo's own folder, removed at
    # exit: gradio would leave its per-file folders behind in the system's temporary folder. Read by gradio
    # when the page's components and server are made, so set before either.
    engine.files.gradio.mkdir(exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(engine.files.gradio)
    page = build_page(engine)
    # One job at a time: they share one model and, on a CPU, every core.
    page.queue(default_concurrency_limit=1)
    theme = gr.themes.Default(font=LOCAL_FONTS, font_mono=LOCAL_MONO)
    font = bundled_font()
    gr.set_static_paths([font])
    css = f'@font-face {{ font-family: "{PAGE_FONT}"; src: url("/gradio_api/file={font}"); }}'
    try:
        page.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, show_error=False,
                    share=False, inbrowser=False, ssr_mode=False, mcp_server=False, pwa=False,
                    max_file_size=UPLOAD_BACKSTOP * engine.max_upload_bytes,
                    allowed_paths=[str(engine.work_dir), font], theme=theme, css=css, footer_links=[])
    except OSError as err:  # the port was free when the tool checked it, and taken since
        raise FGDenseError(f"cannot listen on {host}:{port} ({one_line(err)}); pass another --port") from None
    return page


__all__ = ["build_page", "serve"]
