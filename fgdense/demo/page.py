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


def _file(path) -> str | None:
    return None if path is None else str(path)


def build_page(engine: DemoEngine):
    """The gradio Blocks of the demo for ``engine`` (not launched)."""
    gr = require_gradio()

    def progress_of(progress):
        return lambda fraction, text: progress(fraction, desc=text)

    def image_input(prefix: str):
        return _forgiving(gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], label="image",
                                   elem_id=f"{prefix}-image", height=360))

    def picture(label: str, elem_id: str, show_label: bool = True):
        return gr.Image(label=label, type="filepath", format="png", interactive=False, elem_id=elem_id,
                        buttons=["download", "fullscreen"], show_label=show_label)

    def status(prefix: str):
        return gr.Textbox(label="status", interactive=False, max_lines=3, elem_id=f"{prefix}-status")

    with gr.Blocks(title="fgdense demo: FG-CLIP 2 dense prediction", analytics_enabled=False,
                   delete_cache=(1800, 3600)) as page:
        gr.Markdown("## fgdense: open-vocabulary dense prediction with FG-CLIP 2")
        gr.Markdown(engine.notice(), elem_id="notice")
        with gr.Tabs():
            # ------------------------------------------------------------------------------ Segment
            with gr.Tab("Segment", id="segment"):
                with gr.Row():
                    with gr.Column(scale=2):
                        seg_image = image_input("seg")
                        seg_labels = gr.Textbox(label="labels", placeholder="电脑 cat", info=LABELS_HELP,
                                                elem_id="seg-labels")
                        seg_background = gr.Textbox(label="background labels (optional)", placeholder="wall floor",
                                                    info="pixels these labels win are background",
                                                    elem_id="seg-background")
                        auto = engine.auto_threshold
                        seg_mode = gr.Radio(["auto", "number", "none"], value="auto", label="background threshold",
                                            info=("auto: the model's own 50 % match point"
                                                  + (f" (cosine {auto:.3f})" if auto is not None else "")
                                                  + "; number: the slider; none: every pixel gets its best label"),
                                            elem_id="seg-mode")
                        seg_value = gr.Slider(-1.0, 1.0, value=round(auto if auto is not None else 0.1, 3),
                                              step=0.005, label="threshold (cosine), used with 'number'",
                                              elem_id="seg-threshold")
                        seg_refine = gr.Checkbox(label="refine: snap mask edges to image edges", value=False,
                                                 elem_id="seg-refine")
                        seg_run = gr.Button("Segment", variant="primary", elem_id="seg-run")
                    with gr.Column(scale=3):
                        seg_status = status("seg")
                        seg_overlay = picture("overlay", "seg-overlay")
                        seg_heatmaps = picture("one heatmap per label", "seg-heatmaps", show_label=False)
                        seg_table = gr.Dataframe(headers=["label", "area", "mean score", "max score"],
                                                 interactive=False, elem_id="seg-table")
                        with gr.Row():
                            seg_map = gr.File(label="label map (PNG: 0 background, k = k-th label)",
                                              elem_id="seg-labelmap")
                            seg_json = gr.File(label="JSON (areas, scores, RLE masks)", elem_id="seg-json")

            # -------------------------------------------------------------------------- Label boxes
            with gr.Tab("Label boxes", id="boxes"):
                with gr.Row():
                    with gr.Column(scale=2):
                        box_image = image_input("box")
                        box_view = gr.Image(label="boxes: click two opposite corners to draw one", type="filepath",
                                            interactive=False, elem_id="box-view", height=360, buttons=["fullscreen"])
                        box_text = gr.Textbox(label="boxes (x1, y1, x2, y2 in image pixels)", lines=2,
                                              placeholder="[[40, 30, 260, 290], [0, 0, 451, 120]]",
                                              info="drawn, typed, or loaded: the JSON tools/classify_boxes.py reads",
                                              elem_id="box-boxes")
                        with gr.Row():
                            box_file = gr.File(label="boxes JSON file", file_types=[".json"], elem_id="box-file")
                            box_clear = gr.Button("Clear boxes", elem_id="box-clear")
                        box_labels = gr.Textbox(label="labels", placeholder="电脑 cat", info=LABELS_HELP,
                                                elem_id="box-labels")
                        box_top = gr.Slider(1, 10, value=5, step=1, label="top-k labels listed per box",
                                            elem_id="box-topk")
                        box_run = gr.Button("Label boxes", variant="primary", elem_id="box-run")
                    with gr.Column(scale=3):
                        box_status = status("box")
                        box_picture = picture("labelled boxes", "box-picture")
                        box_table = gr.Dataframe(headers=["box", "x1", "y1", "x2", "y2", "top 1"], interactive=False,
                                                 elem_id="box-table")
                        box_json = gr.File(label="JSON (per box: best label, probabilities, top-k)",
                                           elem_id="box-json")
                box_pending = gr.State(None)

            # ------------------------------------------------------------------------------- Ground
            with gr.Tab("Ground", id="ground"):
                with gr.Row():
                    with gr.Column(scale=2):
                        gr_image = image_input("gr")
                        gr_phrases = gr.Textbox(label="phrases, one a line", lines=3,
                                                placeholder="the cat's left eye\n一只猫", elem_id="gr-phrases")
                        gr_boxes = gr.Textbox(label="candidate boxes (optional)", lines=2,
                                              placeholder="[[40, 30, 260, 290], [0, 0, 451, 120]]",
                                              info="empty: boxes are proposed from each phrase's heatmap",
                                              elem_id="gr-boxes")
                        gr_file = gr.File(label="candidate boxes JSON file", file_types=[".json"], elem_id="gr-file")
                        gr_run = gr.Button("Ground", variant="primary", elem_id="gr-run")
                    with gr.Column(scale=3):
                        gr_status = status("gr")
                        gr_picture = picture("best box per phrase", "gr-picture")
                        gr_heatmaps = picture("phrase heatmaps", "gr-heatmaps", show_label=False)
                        gr_table = gr.Dataframe(headers=["phrase", "walk", "best box", "score"], interactive=False,
                                                elem_id="gr-table")
                        gr_json = gr.File(label="JSON", elem_id="gr-json")

            # ----------------------------------------------------------------------- Dense explorer
            with gr.Tab("Dense explorer", id="explore"):
                with gr.Row():
                    with gr.Column(scale=2):
                        ex_image = image_input("ex")
                        ex_budget = gr.Dropdown(engine.budget_choices, value=engine.budget or 1024,
                                                label="patch budget",
                                                info=("more patches: finer maps, slower"
                                                      + ("" if engine.device.type == "cuda" else
                                                         "; up to 16384 on a GPU, up to 4096 on this CPU")),
                                                elem_id="ex-budget")
                        ex_view = gr.Image(label="click a point: its patch's similarity to every patch",
                                           type="filepath", interactive=False, elem_id="ex-view", height=360,
                                           buttons=["fullscreen"])
                        ex_texts = gr.Textbox(label="texts (as labels: spaces or commas between them)",
                                              placeholder="电脑 cat", elem_id="ex-texts")
                        ex_run = gr.Button("Text heatmaps", variant="primary", elem_id="ex-run")
                    with gr.Column(scale=3):
                        ex_status = status("ex")
                        ex_point = picture("similarity of the clicked patch to every patch", "ex-point",
                                           show_label=False)
                        ex_heatmaps = picture("text heatmaps", "ex-heatmaps", show_label=False)
                        ex_table = gr.Dataframe(headers=["text", "min cosine", "max cosine", "best patch"],
                                                interactive=False, elem_id="ex-table")

        images = [seg_image, box_image, gr_image, ex_image]
        statuses = [seg_status, box_status, gr_status, ex_status]

        # ----------------------------------------------------------------------------- handlers
        def on_upload(path):
            """An upload is checked at once, and a good image goes into the other tabs too (one photo, four jobs)."""
            answer, error = guarded(engine.image, path)
            if answer is None:
                return [gr.update()] * (len(images) - 1) + [error]
            line = f"image {os.path.basename(path)}: {answer.width}x{answer.height} pixels"
            return [path] * (len(images) - 1) + [line]

        for index, component in enumerate(images):
            # .upload fires on a person's upload only, not when another tab sets the value: no echo.
            others = [c for c in images if c is not component]
            component.upload(on_upload, component, others + [statuses[index]])

        def run_segment(path, labels, background, mode, value, refine, progress=gr.Progress()):
            threshold = {"auto": "auto", "none": None}.get(mode, value)
            answer, error = guarded(engine.segment, path, labels, background, threshold, refine, progress_of(progress))
            if answer is None:
                return error, None, None, None, None, None
            return (answer.message, str(answer.overlay), str(answer.heatmaps), answer.table, str(answer.label_map),
                    str(answer.json))

        seg_outputs = [seg_status, seg_overlay, seg_heatmaps, seg_table, seg_map, seg_json]
        seg_inputs = [seg_image, seg_labels, seg_background, seg_mode, seg_value, seg_refine]
        seg_run.click(run_segment, seg_inputs, seg_outputs)
        seg_labels.submit(run_segment, seg_inputs, seg_outputs)

        def show_boxes(path, text):
            if not path:
                return None, gr.update()
            answer, error = guarded(engine.preview_boxes, path, text)
            if answer is None:  # boxes still being typed: the bare picture, and what is wrong with them
                answer, _ = guarded(engine.view, path)
                return _file(answer), error
            return str(answer), gr.update()  # the status keeps what the click or the upload said

        box_image.change(show_boxes, [box_image, box_text], [box_view, box_status])
        box_text.change(show_boxes, [box_image, box_text], [box_view, box_status])

        def on_box_click(path, pending, text, evt: gr.SelectData):
            if not path:
                return pending, text, "upload an image first"
            x, y = evt.index[:2]
            answer, error = guarded(add_corner, pending, x, y, text)
            return answer if answer is not None else (None, text, error)

        box_view.select(on_box_click, [box_image, box_pending, box_text], [box_pending, box_text, box_status])
        box_clear.click(lambda: (None, "", "boxes cleared"), None, [box_pending, box_text, box_status])

        def load_boxes(path, current):
            answer, error = guarded(engine.boxes_file, path)
            return (current, error) if answer is None else (answer, f"boxes loaded from {os.path.basename(path)}")

        box_file.upload(load_boxes, [box_file, box_text], [box_text, box_status])
        gr_file.upload(load_boxes, [gr_file, gr_boxes], [gr_boxes, gr_status])

        def run_boxes(path, boxes, labels, top_k, progress=gr.Progress()):
            answer, error = guarded(engine.classify, path, boxes, labels, top_k, progress_of(progress))
            if answer is None:
                return error, None, None, None
            return (answer.message, str(answer.picture), {"headers": answer.headers, "data": answer.table},
                    str(answer.json))

        box_run.click(run_boxes, [box_image, box_text, box_labels, box_top], [box_status, box_picture, box_table,
                                                                                box_json])

        def run_ground(path, phrases, boxes, progress=gr.Progress()):
            answer, error = guarded(engine.ground, path, phrases, boxes, progress_of(progress))
            if answer is None:
                return error, None, None, None, None
            return answer.message, str(answer.picture), str(answer.heatmaps), answer.table, str(answer.json)

        gr_run.click(run_ground, [gr_image, gr_phrases, gr_boxes], [gr_status, gr_picture, gr_heatmaps, gr_table,
                                                                     gr_json])

        def show_view(path):
            if not path:
                return None, gr.update()
            answer, error = guarded(engine.view, path)
            return _file(answer), error or gr.update()

        ex_image.change(show_view, ex_image, [ex_view, ex_status])

        def on_point(path, budget, evt: gr.SelectData, progress=gr.Progress()):
            x, y = evt.index[:2]
            answer, error = guarded(engine.point_similarity, path, x, y, budget, progress_of(progress))
            return (error, None) if answer is None else (answer.message, str(answer.picture))

        ex_view.select(on_point, [ex_image, ex_budget], [ex_status, ex_point])

        def run_texts(path, texts, budget, progress=gr.Progress()):
            answer, error = guarded(engine.text_heatmaps, path, texts, budget, progress_of(progress))
            return (error, None, None) if answer is None else (answer.message, str(answer.picture), answer.table)

        ex_inputs = [ex_image, ex_texts, ex_budget]
        ex_run.click(run_texts, ex_inputs, [ex_status, ex_heatmaps, ex_table])
        ex_texts.submit(run_texts, ex_inputs, [ex_status, ex_heatmaps, ex_table])
    return page


def serve(engine: DemoEngine, host: str = "127.0.0.1", port: int = 7860, quiet: bool = False):
    """Build the page and start serving it without blocking; returns the running Blocks (``.close()`` stops it)."""
    gr = require_gradio()
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
