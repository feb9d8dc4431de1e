"""Shared pieces of the command-line tools: one-line errors, devices."""

from __future__ import annotations

import sys

import torch


def fail(message: str, code: int = 1) -> int:
    """Print one error line to stderr and return the exit code (tools `return fail(...)`)."""
    print(f"error: {message}", file=sys.stderr)
    return code


def pick_device(name: str | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is checked."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device
