"""The end every evaluation tool shares: the report written, its table printed, its picture drawn."""

from __future__ import annotations

from pathlib import Path

from ..errors import printable
from ..io.files import json_text, write_all, write_text


def write_report(report: dict, report_path: Path, plot_path: Path | None, table: str, font=None) -> None:
    """Write ``report`` (all-or-nothing), print ``table``, then draw ``plot_path`` if asked: after the
    report is safe, so a picture that fails to draw cannot cost the evaluation."""
    write_all([(report_path, write_text(json_text(report)))])  # float32 values spelt as people write them
    print(printable(table, keep="\n"))  # names from a user's file: a terminal control in one is shown, not run
    print(printable(f"report written to {report_path}"))
    if plot_path is not None:
        from .plots import write_plot

        write_all([(plot_path, write_plot(report, font=font))])
        print(printable(f"plot written to {plot_path}"))


__all__ = ["write_report"]
