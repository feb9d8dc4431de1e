"""What every command-line tool shares: the same flags with the same meanings, and the same way to end.

* Flags: ``--model`` (default ``qihoo360/fg-clip2-base``), ``--out``, ``--device``, ``--precision``,
  ``--max-patches``, ``--font``, ``--text-mask``, ``--quiet``, ``--version``; each tool adds only what is
  its own.
* Ending: a user mistake is one ``error: ...`` line and exit code 1; Ctrl-C is one ``interrupted: ...``
  line saying what was finished, and exit code 130 (SIGTERM the same, exit code 143); never a traceback. Warnings print as one
  ``warning: ...`` line each.

This module is imported before the arguments are parsed, so it imports nothing heavy: ``--help``
answers at once, and torch loads only when a tool gets to work.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import warnings

from .checkpoint import DEFAULT_MODEL
from .errors import FGDenseError, printable

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)
TERMINATED = 143  # and by a plain kill (128 + SIGTERM)
MAX_MESSAGE = 600  # characters of an error line; longer messages are cut


def say(line: str) -> None:
    """Write one line to stderr in a single write: ``print`` writes the text and its newline apart, and two
    processes of one torchrun job refusing at the same moment would run their lines together."""
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()


def fail(message: str, code: int = 1) -> int:
    """Print one error line to stderr and return the exit code (tools ``return fail(...)``)."""
    say(f"error: {one_line(message)}")
    return code


def one_line(message) -> str:
    """A message as one printable line: whitespace runs are one space, terminal controls (ESC, BEL) escaped."""
    text = printable(" ".join(str(message).split()))
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


class Status:
    """What a tool has finished, for the line Ctrl-C prints: ``done`` of ``total`` ``unit``s."""

    def __init__(self):
        self.unit, self.total, self.done, self.note = "item", None, 0, ""

    def start(self, total: int | None, unit: str, note: str = "") -> None:
        self.unit, self.total, self.done, self.note = unit, total, 0, note

    def describe(self) -> str:
        if self.total is None:
            return "nothing was finished" if not self.done else f"{self.done} {self.unit}(s) finished"
        text = f"{self.done} of {self.total} {self.unit}(s) finished, {self.total - self.done} not"
        return text + (f"; {self.note}" if self.note else "")


status = Status()


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {one_line(message)}\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM (a plain ``kill``, a scheduler ending a job): stops the work as Ctrl-C does, so every
    clean-up that Ctrl-C runs (temporary files, workers, the output folder's lock) runs for it too."""


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


@contextlib.contextmanager
def _sigterm_stops():
    """SIGTERM raises :class:`Terminated` in the main thread while a tool runs (signals reach only it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(main, argv=None) -> int:
    """Run a tool's ``main(argv)`` with the shared ending: one line for errors, for Ctrl-C and for SIGTERM."""
    warnings.formatwarning = _warning_line
    try:
        with _sigterm_stops():
            return main(argv)
    except Terminated:
        say(f"interrupted (SIGTERM): {status.describe()}; every file written is complete")
        return TERMINATED
    except KeyboardInterrupt:
        say(f"interrupted: {status.describe()}; every file written is complete")
        return INTERRUPTED
    except FGDenseError as err:
        return fail(str(err))


class _VersionAction(argparse.Action):
    """``--version``: fgdense's and its key dependencies' versions against their tested ranges, then exit."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from .versions import main as versions_main

        parser.exit(versions_main([]))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the tools' ending: a flag it cannot read (a typo in a choice, a word where a number
    goes, a missing argument) is one ``error: ...`` line naming the flag, exit code 2, not a usage block."""

    def error(self, message):
        self.exit(2, f"error: {printable(message)} (see {self.prog} --help)\n")


def parser(description: str, *, out_help: str | None = None, out_default: str | None = None,
           model: bool = True, device: bool = True, precision: str | None = "auto", max_patches: str | None = None,
           font: bool = False, text_mask: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the shared flags a tool takes (the tool adds its own after)."""
    p = ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if model:
        p.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"checkpoint folder or model-hub id (default {DEFAULT_MODEL})")
    if out_help:
        p.add_argument("--out", default=out_default, help=out_help)
    if device:
        p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N")
    if precision:
        p.add_argument("--precision", default=precision, choices=["auto", "fp32", "bf16", "fp16"],
                       help=f"auto = bf16 autocast on CUDA and on CPUs with AMX, fp32 on other CPUs (default {precision})")
    if max_patches:
        p.add_argument("--max-patches", default=max_patches,
                       help="patch budget per image: auto (16384 on a GPU, 1024 on a CPU), checkpoint (the "
                            "checkpoint's own processing, 128-1024 by image size, as the official evaluations) "
                            f"or a number up to 16384 (default {max_patches})")
    if font:
        p.add_argument("--font", help="font file for the pictures' text (default: the bundled CJK font, else an "
                                      "installed font that draws more of the labels)")
    if text_mask:
        p.add_argument("--text-mask", default="tokenizer", choices=["tokenizer", "none"],
                       help="tokenizer: feed the attention mask the tokenizer returns, as the official evaluation "
                            "(default); none: input ids only, as the official training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--version", action=_VersionAction,
                   help="print the versions of fgdense and its key dependencies, each against the range the test "
                        "suite passed on, and exit (1 if one is outside it)")
    return p


def run_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of every run over many images on the bulk runner: the bulk tools and the evaluations."""
    p.add_argument("--overwrite", action="store_true",
                   help="redo images whose outputs are already complete (default: a rerun skips them)")
    p.add_argument("--workers", default="auto",
                   help="processes decoding images ahead of the model, per process (default auto: up to 4, "
                        "from the CPUs each process has; 0 decodes in the model's process)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images of equal patch count per model pass, at most (default 8)")
    return p


def bulk_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of the tools that run on any number of images (files, folders, manifests; torchrun)."""
    run_flags(p)
    p.add_argument("--coco", metavar="FILE.json",
                   help="also write one COCO-format file of the whole run's results (pycocotools loads it)")
    p.add_argument("--summary", metavar="FILE.json", help="also write the run's summary (counts, timings) as JSON")
    return p


def check_batch_size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FGDenseError(f"--batch-size must be at least 1, got {value!r}")
    return value


def workers_setting(text: str) -> int:
    """``--workers`` as a number: "auto" is up to 4, leaving one CPU of this process's share to it."""
    import os

    if text == "auto":
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(0, min(4, cpus // max(1, per_node) - 1))
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise FGDenseError(f"--workers must be auto or a whole number >= 0, got {text!r}")
    from .bulk.workers import check_workers

    return check_workers(value)


def bulk_ending(summary: dict, ranks, out, what: str = "image(s) could not be used") -> int:
    """A bulk run's last lines (printed by its main process) and exit code: 1 when a file could not be used."""
    from .bulk.summary import describe

    if ranks.main:
        for line in describe(summary, out):
            print(line)
        if "coco" in summary:
            coco = summary["coco"]
            print(f"COCO results: {coco['images']} image(s), {coco['annotations']} annotation(s) in {coco['file']}")
    if not summary["bad"]:
        return 0
    message = f"{summary['bad']} of {summary['images']} {what}; the rest are written (list: {summary.get('bad_files')})"
    if ranks.world > 1:
        # torchrun reports any non-zero exit as a crash, with a traceback: at scale bad files are a warning.
        if ranks.main:
            say(f"warning: {one_line(message)}")
        return 0
    return fail(message)


def max_patches_setting(text: str):
    """``--max-patches`` as a task setting: "auto", None (checkpoint) or a checked number."""
    if text == "auto":
        return "auto"
    if text == "checkpoint":
        return None
    from .defaults import check_budget

    return check_budget(text, "--max-patches")


def threshold_setting(text: str):
    """``--threshold`` as a segmentation setting: "auto", None ("none") or a finite cosine."""
    from .defaults import check_threshold

    try:
        return check_threshold(text)
    except FGDenseError:
        raise FGDenseError(f"--threshold must be auto, none or a finite number, got {text!r}") from None


@contextlib.contextmanager
def output_folder(path):
    """Create the output folder ``path`` for the work inside; if that work fails and the folder was made
    here and is still empty, it is removed again, so a failed run leaves nothing behind."""
    from pathlib import Path

    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise


def device_of(name: str, model=None):
    """``--device`` checked on this machine (a one-line error if it cannot be used). The tools call it
    once their inputs are checked and before anything heavy loads, so ``model`` (``--model``) is checked
    here first: a local folder that does not exist answers at once (a hub id is looked up when it loads)."""
    if model is not None:
        from .checkpoint import local_checkpoint

        local_checkpoint(model)
    from .devices import resolve_device

    return resolve_device(name)


__all__ = ["INTERRUPTED", "TERMINATED", "Status", "Terminated", "bulk_ending", "bulk_flags", "check_batch_size", "device_of", "fail", "max_patches_setting", "one_line", "output_folder", "parser", "run", "run_flags", "status",
           "threshold_setting", "workers_setting"]
