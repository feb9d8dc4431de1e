"""What the three bulk tools (segment, classify_boxes, ground) share once their own flags are checked.

:func:`plan` checks the run's output files and counts the run before any model is loaded; :func:`execute`
joins the ``torchrun`` processes, builds the job on this process's device and runs it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FGDenseError, OutputError
from ..io.files import check_outputs
from ..io.sources import Sources
from ..io.output_names import output_suffixes
from .folder import reserved_names
from .options import RunOptions


def _json_path(value, flag: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if path.suffix.lower() != ".json":
        raise OutputError(f"{flag} {path} must end in .json")
    return path


def box_sources(images, boxes_file) -> tuple[Sources, list | None]:
    """The tools' inputs, and the boxes of ``--boxes FILE`` (one image) given to them: read and checked
    against the image now, before any model work, as every other input is. None without a boxes file."""
    from ..io.inputs import read_boxes_file

    sources = Sources(images)
    if not boxes_file:
        return sources, None
    boxes = read_boxes_file(boxes_file)
    sources.give_boxes(boxes)
    from ..model.boxes import validate_boxes  # torch and transformers: once the inputs exist
    from ..processing.image import load_image

    image = load_image(images[0])
    validate_boxes(boxes, (image.height, image.width))
    return sources, boxes


def plan(sources: Sources, out: Path, kind: str, pictures: bool, *, coco=None, summary=None, workers: int = 0,
         batch_size: int = 8, overwrite: bool = False, progress: bool = True,
         also: dict[str, object] | None = None) -> RunOptions:
    """The run's options, after refusing what cannot be written: a ``--coco`` or ``--summary`` file that is
    not .json, lies in a folder that does not exist, or is an input; any image output that would write over
    an input. Counts the run's images (one lazy pass over the sources)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FGDenseError(f"--batch-size must be at least 1, got {batch_size!r}")
    coco, summary = _json_path(coco, "--coco"), _json_path(summary, "--summary")
    inputs = {"manifest": sources.manifests, "input image": sources.explicit_images, **(also or {})}
    for name, path in (("--coco", coco), ("--summary", summary)):
        if path is not None and os.path.realpath(path.parent) != os.path.realpath(out) and not path.parent.is_dir():
            raise OutputError(f"the folder of {name} {path} does not exist")
    check_outputs({"--coco": coco, "--summary": summary}, inputs, folders=False)
    # The run's own files in the output folder, and those of earlier runs: no image's outputs may take their names.
    reserved = reserved_names(out) + tuple(p.name for p in (coco, summary) if p is not None and
                                           os.path.realpath(p.parent) == os.path.realpath(out))
    suffixes = output_suffixes(kind, pictures)
    total = sources.check_outputs_spare_inputs(out, lambda name: [name + s for s in suffixes], reserved, also)
    return RunOptions(out=Path(out), workers=workers, batch_size=batch_size, overwrite=overwrite, coco=coco,
                      summary=summary, progress=progress, total=total, reserved=reserved,
                      inputs=tuple(sources.manifests))


def execute(make_job, sources: Sources, options: RunOptions, device, status=None):
    """Join ``torchrun``'s processes (if any), build the job on this process's device with
    ``make_job(device)``, run it; returns (summary, ranks). The output folder is created here."""
    from ..checkpoint import fingerprint
    from .distributed import join, leave  # torch: only once the arguments are known to be right
    from .runner import run

    device, ranks = join(device)
    created = not options.out.exists()
    try:
        job = make_job(device)
        folder = getattr(job.task.model, "checkpoint_folder", None)
        job.fingerprint = fingerprint(folder) if folder else ""
        options.out.mkdir(parents=True, exist_ok=True)
        summary = run(job, sources, options, ranks, status)
    except BaseException:
        # A run that fails before writing anything leaves no empty output folder behind.
        if created and options.out.is_dir() and not any(options.out.iterdir()):
            try:
                options.out.rmdir()
            except OSError:  # another rank has just written into it
                pass
        raise
    finally:
        leave()
    return summary, ranks


__all__ = ["execute", "plan"]
