"""Training checkpoints that resume under ``torch.load(weights_only=True)``.

mmengine's checkpoints hold the message hub's ``HistoryBuffer`` s, which pickle bound methods
(``getattr``) and numpy arrays; PyTorch's default weights-only loader rightly refuses those, so
``--resume`` would fail, and allowing ``getattr`` would let a checkpoint run code. Instead the buffers
are pickled as a plain constructor call on lists of numbers, and only that constructor (and the numpy
scalar/array pieces some mmengine states hold) is allowlisted.
"""

from __future__ import annotations

import copyreg
import importlib

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def _reduce_history_buffer(buffer: HistoryBuffer):
    # Plain Python numbers: the loader needs no numpy globals and no getattr to rebuild this.
    logs, counts = buffer.data
    return HistoryBuffer, (logs.tolist(), counts.tolist(), buffer.max_length)


def _multiarray():
    """numpy's multiarray module: ``numpy._core.multiarray`` from numpy 2, ``numpy.core.multiarray`` in 1.x
    (whose ``numpy._core`` is an empty shim)."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "_reconstruct"):
            return module
    raise ImportError("numpy's multiarray module was not found")


def _numpy_globals() -> list:
    multiarray = _multiarray()
    found = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return found


def enable_safe_resume() -> None:
    """Pickle HistoryBuffers safely and allowlist what mmengine checkpoints need for weights-only loading."""
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    torch.serialization.add_safe_globals([HistoryBuffer, *_numpy_globals()])
