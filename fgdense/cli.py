"""Shared pieces of the command-line tools: one-line errors, devices."""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def fail(message: str, code: int = 1) -> int:
    """Print one error line to stderr and return the exit code (tools `return fail(...)`)."""
    print(f"error: {message}", file=sys.stderr)
    return code


def pick_device(name: str | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is checked."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def output_paths(output: str, png: str | None = None, no_png: bool = False) -> tuple[str, str | None, str | None]:
    """The JSON and PNG paths a box tool writes (PNG beside the JSON unless given or turned off),
    and an error message if a folder to write into does not exist."""
    png = None if no_png else (png or str(Path(output).with_suffix(".png")))
    if png and Path(png).resolve() == Path(output).resolve():
        return output, png, f"--output {output} and the picture would be the same file; name the JSON *.json or pass --png"
    for option, value in (("--output", output), ("--png", png)):
        if value and not Path(value).resolve().parent.is_dir():
            return output, png, f"the folder of {option} {value} does not exist"
    return output, png, None
