"""Serve a local web page to segment, label boxes, ground phrases and explore dense features on your photos.

    python tools/demo.py [--model qihoo360/fg-clip2-base] [--device auto] [--host 127.0.0.1] [--port 7860]
        [--precision auto] [--max-patches BUDGET] [--font PATH] [--text-mask tokenizer|none]

Needs the demo extra: pip install -e ".[demo]" (gradio). The page has four tabs: Segment, Label boxes,
Ground and Dense explorer; an image's dense features are computed once and reused while labels change.
Each tab runs at its tool's default patch budget unless --max-patches is given, so a box gets the numbers
tools/classify_boxes.py gives it. It listens on 127.0.0.1 (this machine only) unless --host says otherwise;
Ctrl-C stops it (after the running job, if one is running).
"""

import ipaddress
import os
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402  (light: the heavy imports come after the arguments are parsed)
from fgdense.defaults import DENSE_MAX_PATCHES, REGION_MAX_PATCHES, max_patches_flag  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], font=True)
    parser.add_argument("--max-patches",
                        help="patch budget of the Segment, Label boxes and Ground tabs: auto (16384 on a GPU, 1024 "
                             "on a CPU), checkpoint (the checkpoint's own processing) or a number up to 16384 "
                             f"(default: each tab its tool's, {max_patches_flag(DENSE_MAX_PATCHES)} for Segment, "
                             f"{max_patches_flag(REGION_MAX_PATCHES)} for Label boxes and Ground)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens the page "
                             "to every machine that can reach this one)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    return parser.parse_args(argv)


def check_port(host: str, port: int) -> None:
    """The port can be listened on at ``host``, or one line saying why not (before the model loads)."""
    from fgdense.errors import FGDenseError

    if not 1 <= port <= 65535:
        raise FGDenseError(f"--port must be from 1 to 65535, got {port}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except socket.gaierror:
        raise FGDenseError(f"--host {host!r} is not an address of this machine") from None
    except OSError as err:
        raise FGDenseError(f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --port") from None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def work(argv) -> int:
    args = parse_args(argv)
    from fgdense.demo import require_gradio

    # Every mistake before the model loads: a missing extra, a busy port, a bad budget, font or device
    # (the quick checks first: importing gradio, or torch, takes seconds).
    require_gradio(load=False)
    check_port(args.host, args.port)
    budget = {} if args.max_patches is None else {"max_num_patches": cli.max_patches_setting(args.max_patches)}
    if args.font:
        from fgdense.io.fonts import choose_font

        choose_font([], args.font, warn=False)
    device = cli.device_of(args.device)  # (the model is checked when it loads: after gradio, a missing extra first)
    from fgdense.demo.workdir import WorkDir

    # The demo's own folder, made before gradio is imported: gradio fixes some of its temporary folders
    # at import, and every one of them must go into this folder, which is removed at exit.
    files = WorkDir()
    try:
        os.environ["GRADIO_TEMP_DIR"] = str(files.gradio)
        require_gradio()
        from fgdense.demo.engine import DemoEngine

        print(f"loading {args.model} on {device} ...", flush=True)
        engine = DemoEngine.from_pretrained(args.model, device=device, precision=args.precision,
                                            text_mask=args.text_mask, font=args.font, work_dir=files.path, **budget)
    except BaseException:
        files.remove()
        raise
    from fgdense.demo.page import serve

    # A plain kill (SIGTERM) stops the server as Ctrl-C does, so the run's files are removed either way.
    signal.signal(signal.SIGTERM, _interrupt)
    page, stopped = None, False
    try:
        page = serve(engine, args.host, args.port)
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"fgdense demo on http://{shown}:{args.port} (Ctrl-C stops it)", flush=True)
        if not is_loopback(args.host):
            print(f"warning: listening on {args.host}: every machine that can reach this one can use the page",
                  file=sys.stderr, flush=True)
        if not engine.released:
            print("note: a tiny or random checkpoint: the page shows the format of the results, not the model",
                  flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stopped = True
    finally:
        stop(page, engine)
    if stopped:
        print("stopped: the demo server is closed", flush=True)
    return 0


def stop(page, engine) -> None:
    """Stop in order: no new jobs, the server closed, the running job finished, the files removed.

    A job thread still inside torch when the interpreter exits aborts it (``terminate called without an
    active exception``), so the process ends only after the job: a second Ctrl-C (or a job past the
    engine's wait) leaves at once through ``os._exit``, which runs no C++ destructors, after removing the
    files."""
    engine.stop()
    if engine.busy():
        print("stopping: waiting for the running job to finish (Ctrl-C again to leave at once)", flush=True)
    try:
        if page is not None:
            page.close()
        finished = engine.close()
    except KeyboardInterrupt:
        finished = False
    if not finished:
        engine.files.remove()
        print("interrupted: left without waiting for the running job", file=sys.stderr, flush=True)
        os._exit(cli.INTERRUPTED)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
