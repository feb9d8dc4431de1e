"""What the embedding-based evaluation tools (eval_fgovd, eval_retrieval, eval_zeroshot) share once their
own flags are parsed: the run flags checked, torchrun joined and left, the report written by rank 0, and
the ``--plot`` picture checked first and written last.

Imports nothing heavy at module level: ``--help`` answers before torch loads.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from . import cli


PLOT = "plot.png"  # --plot's picture, in the output folder beside report.json


def check_eval_args(args, inputs: dict) -> tuple[Path, Path]:
    """The run flags (``--workers``, ``--batch-size``, ``--max-patches``, ``--max-images``, and ``--plot``
    with ``--font`` where the tool has them) and the output folder checked before any model work; ``inputs``
    (name -> path) are never written over. Returns (output folder, report path)."""
    from .errors import DatasetError, FGDenseError
    from .io.files import check_output_folder, check_outputs

    images = getattr(args, "images", None)
    if images is not None and not Path(images).is_dir():
        raise DatasetError(f"images folder {images} does not exist")
    for name, path in inputs.items():  # before torch loads: a mistyped path answers at once (what kind of
        if path and not Path(path).exists():  # path each protocol reads, file or folder, its reader checks)
            raise DatasetError(f"{name} {path} does not exist")
    args.workers = cli.workers_setting(args.workers)
    args.batch_size = cli.check_batch_size(args.batch_size)
    args.max_patches = cli.max_patches_setting(args.max_patches)
    if args.max_images is not None and args.max_images < 0:
        raise FGDenseError("--max-images must be >= 0")
    font = getattr(args, "font", None)
    if font:
        from .io.fonts import choose_font

        choose_font([], font, warn=False)  # a font that is not there or not a font: one line now, not after the run
    out = check_output_folder(args.out)
    report = out / "report.json"
    plot = plot_path(args, out)
    check_outputs({"report": report, "plot": plot}, {**{k: v for k, v in inputs.items() if v}, "font": font},
                  folders=False)
    return out, report


def check_images_kept(outputs: dict, images_dir, names) -> None:
    """Refuse (:class:`OutputError`) an output (name -> path or None) that is one of the images the run
    reads (``names`` under ``images_dir``, or absolute): with --out the images folder, an image named
    plot.png was replaced by the picture. Only images named as an output are looked at (one set lookup
    per image, a file check for those)."""
    from pathlib import PurePath

    from .errors import OutputError
    from .io.files import same_file

    named = {Path(path).name: (label, path) for label, path in outputs.items() if path is not None}
    for name in names:
        if PurePath(name).name in named:
            label, path = named[PurePath(name).name]
            if same_file(Path(images_dir) / name, path):
                raise OutputError(f"{label} {path} is an image the run reads ({name}); fgdense never writes over "
                                  "its inputs: choose another output folder")


def plot_path(args, out: Path) -> Path | None:
    """``OUT/plot.png`` with ``--plot`` (checked by :func:`check_eval_args`), else None."""
    return out / PLOT if getattr(args, "plot", False) else None


def write_sheet(path: Path, draw) -> None:
    """Writes the picture ``draw()`` returns (a PIL image) whole at ``path`` and says so. Called after the
    report is written: a picture that fails cannot cost the evaluation."""
    from .errors import printable
    from .io.files import write_all, write_picture

    write_all([(path, write_picture(draw()))])
    print(printable(f"plot written to {path}"))  # as the report's line: a control character in --out is shown, not run


@contextlib.contextmanager
def joined(device):
    """``(device, ranks)`` of this process inside torchrun's group (or alone); the group is left after."""
    from .bulk.distributed import join, leave

    device, ranks = join(device)
    try:
        yield device, ranks
    finally:
        leave()


def eval_ending(report: dict, report_path: Path, format_report, args, ranks, report_plot: bool = False) -> int:
    """Rank 0 writes the report (all-or-nothing) and prints its table; with ``report_plot`` and ``--plot``
    it then draws the report's picture (:mod:`fgdense.evaluation.plots`) beside it. The exit code."""
    from .evaluation.report import write_report

    if ranks.main:
        report["model"] = args.model
        plot = plot_path(args, report_path.parent) if report_plot else None
        write_report(report, report_path, plot, format_report(report), getattr(args, "font", None))
    return 0


__all__ = ["check_eval_args", "check_images_kept", "eval_ending", "joined", "plot_path", "write_sheet"]
