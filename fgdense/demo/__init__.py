"""A local web page on the tasks: segment, label boxes, ground phrases, explore dense features.

* :mod:`fgdense.demo.cache`: dense features computed once per image and patch budget, shared by the tasks;
* :mod:`fgdense.demo.engine`: the page's jobs on the tasks, without any web code (tested on its own),
  with :mod:`~fgdense.demo.explorer` (the Dense explorer), :mod:`~fgdense.demo.fields` (the text fields),
  :mod:`~fgdense.demo.uploads` (uploads under limits), :mod:`~fgdense.demo.answers` (what a job hands the
  page) and :mod:`~fgdense.demo.workdir` (the demo's own folder, removed at exit);
* :mod:`fgdense.demo.page`: the gradio page around the engine. gradio is the optional ``demo`` extra,
  imported only when a page is built (:func:`require_gradio`), so the package works without it.

Run it with ``python tools/demo.py [--model CKPT]``.
"""

import importlib.util
import os

from ..errors import FGDenseError

INSTALL_HINT = 'the demo needs gradio 6: pip install -e ".[demo]" (or pip install "gradio>=6,<7")'


def require_gradio(load: bool = True):
    """The gradio module, or :class:`FGDenseError` saying how to install it. ``load=False`` only looks
    for it (importing gradio takes seconds: a tool checks its other inputs first)."""
    if not load:
        if importlib.util.find_spec("gradio") is None:
            raise FGDenseError(INSTALL_HINT)
        return None
    # Telemetry off before gradio is imported: the page must work, and stay quiet, without a network.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise FGDenseError(INSTALL_HINT) from None
    if int(gradio.__version__.split(".")[0]) < 6:
        raise FGDenseError(f"gradio {gradio.__version__} is installed; {INSTALL_HINT}")
    return gradio


__all__ = ["INSTALL_HINT", "require_gradio"]
