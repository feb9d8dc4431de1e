"""A job over a run's images: this process's share, decoded ahead in DataLoader workers, resumable.

The pipeline of one process (one ``torchrun`` rank, or the only process):

1. the sources are read lazily and every ``world``-th image is this process's (:func:`fgdense.io.sources.shard`);
2. a DataLoader's workers check whether each image's outputs are already complete (then it is skipped),
   decode it, check its boxes and process it for the dense pass (:class:`fgdense.bulk.jobs.Preparer`),
   while the model works on earlier ones; a file that cannot be used is counted by reason, never fatal;
3. images of equal patch count are grouped (:class:`Batcher`) and the task runs on each group;
4. one writer thread renders pictures and writes each image's files all-or-nothing, while the model
   goes on with the next group.

What is in flight when a run stops (a crash, Ctrl-C, a killed node) is at most one group waiting for the
model, the writer's queue and the workers' read-ahead: everything written before is complete and the
next run skips it. At the end the processes merge their counts (and, if asked, their COCO parts).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..devices import quiet_worker
from ..errors import OutputError, OutputNameError
from ..io.files import write_json
from ..io.sources import Sources, shard
from . import coco as coco_file
from .distributed import Ranks, gather
from .folder import FolderLock, claim, note_reserved
from .jobs import Job, Prepared, Preparer, outputs_complete, run_hash
from .options import RunOptions
from .summary import ShareCounts, bad_list_path, describe, merge, write_bad_list
from .workers import check_workers, die_with_parent

# One writer thread: enough to overlap writing with the model, and fonts (FreeType faces) must not be
# used by two threads at once.
WRITE_THREADS = 1
WRITE_QUEUE = 2  # results waiting for the writer before the model waits for it


class Batcher:
    """Groups prepared images of equal patch count for the model.

    A group goes to the model when it holds ``batch_size`` images or another would take it past
    ``max_tokens`` patches; when more than ``batch_size`` images of mixed sizes wait, the largest group
    goes, so at most ``batch_size`` images are ever held back.
    """

    def __init__(self, batch_size: int, max_tokens: int):
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.groups: dict[int, list[Prepared]] = {}

    def add(self, prepared: Prepared) -> list[list[Prepared]]:
        length = prepared.image.patches
        group = self.groups.setdefault(length, [])
        group.append(prepared)
        if len(group) >= self.batch_size or (len(group) + 1) * length > self.max_tokens:
            return [self.groups.pop(length)]
        if sum(len(g) for g in self.groups.values()) > self.batch_size:
            largest = max(self.groups, key=lambda n: n * len(self.groups[n]))
            return [self.groups.pop(largest)]
        return []

    def drain(self) -> list[list[Prepared]]:
        groups, self.groups = list(self.groups.values()), {}
        return groups


class _Items(torch.utils.data.Sampler):
    """The DataLoader's "indices" are the items themselves, drawn lazily from the sources: the worker
    gets everything it needs with each, and no list of the share is ever built."""

    def __init__(self, make):
        self.make = make

    def __iter__(self):
        return iter(self.make())


class _Prepare(torch.utils.data.Dataset):
    def __init__(self, preparer: Preparer):
        self.preparer = preparer

    def __getitem__(self, item):
        return self.preparer.prepare(item)


def _as_is(value):
    return value


def _start_worker(worker_id: int, parent: int) -> None:
    """A DataLoader worker's start: Ctrl-C left to the main process, and no life after the main process.
    SIGTERM ends a worker at once, as it did before the tools caught it (a forked worker inherits the
    main process's handler, which stops a whole run)."""
    quiet_worker(worker_id)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent)


def share_size(total: int | None, ranks: Ranks) -> int | None:
    return None if total is None else len(range(ranks.rank, total, ranks.world))


class _Share:
    """This process's share in flight: the model's groups, the writer's queue, the counts and the bar."""

    def __init__(self, job: Job, share: ShareCounts, bar, status):
        self.job, self.share, self.bar, self.status = job, share, bar, status
        self.writer = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="fgdense-writer")
        self.queue: deque = deque()
        self._counting = threading.Lock()  # the writer thread and this one both count finished images

    def bad(self, item, reason: str, detail: str) -> None:
        self.share.add_bad(item, reason, detail)
        self.job.note_bad(item, reason, detail)

    def finished(self, count: int = 1, shown: bool = True) -> None:
        with self._counting:
            if self.status is not None:
                self.status.done += count
        if shown:
            self.bar.update(count)

    def _timed_write(self, prepared, result) -> None:
        start = time.perf_counter()
        self.job.write(prepared, result)
        self.share.seconds["write"] += time.perf_counter() - start
        # Counted here, in the writer, the moment the image's files are complete: a Ctrl-C lands in the
        # main thread, wherever it lands there the line it prints counts this image exactly once.
        with self._counting:
            self.share.written += 1
        self.finished(shown=False)

    def collect(self, block: bool) -> None:
        while self.queue and (block or len(self.queue) > WRITE_QUEUE or self.queue[0][1].done()):
            prepared, future = self.queue.popleft()
            try:
                future.result()
            except OutputNameError as err:  # this image's output name, not the folder: one bad file
                self.bad(prepared.item, "name_unwritable", str(err))
            except OutputError:
                raise  # the output folder cannot be written (a full disk): no later image could be either
            except Exception as err:  # noqa: BLE001  one image the pictures or files fail on is a bad file
                self.bad(prepared.item, "write_failed", f"{type(err).__name__}: {err}")
            else:
                self.bar.update(1)  # written and counted by the writer (_timed_write)
                continue
            self.finished()

    def compute(self, group: list[Prepared]) -> None:
        start = time.perf_counter()
        try:
            results = self.job.compute(group)
        except Exception as err:  # noqa: BLE001  one image the model fails on must not stop a run
            if len(group) > 1:  # find it: each image of the group alone
                self.share.seconds["model"] += time.perf_counter() - start
                for prepared in group:
                    self.compute([prepared])
                return
            self.bad(group[0].item, "model_failed", f"{type(err).__name__}: {err}")
            self.finished()
            return
        self.share.seconds["model"] += time.perf_counter() - start
        for prepared, result in zip(group, results):
            self.queue.append((prepared, self.writer.submit(self._timed_write, prepared, result)))
            self.collect(block=False)

    def take(self, prepared: Prepared, batcher: Batcher) -> None:
        """One image back from the workers: skipped, bad, or on to the model with its group."""
        if prepared.state == "skipped":
            self.share.skipped += 1
            self.finished()
        elif prepared.state == "bad":
            self.bad(prepared.item, prepared.reason, prepared.detail)
            self.finished()
        else:
            for group in batcher.add(prepared):
                self.compute(group)

    def stop(self) -> None:
        """On a stop, the write under way finishes (it is all-or-nothing anyway) and queued ones are
        dropped; every finished write counted itself, so the line an interruption prints is exact."""
        self.writer.shutdown(wait=True, cancel_futures=True)
        self.queue.clear()
        self.bar.close()


def run(job: Job, sources: Sources, options: RunOptions, ranks: Ranks = Ranks(), status=None) -> dict:
    """Run ``job`` on this process's share of ``sources``; every process returns the run's merged summary.

    ``status`` (a :class:`fgdense.cli.Status`) counts the finished images, for the line an interruption
    prints. The main process also writes the bad-file list, the COCO file and the summary file. The output
    folder is locked for the run: a second run into it stops with one line (:mod:`fgdense.bulk.folder`).
    """
    check_workers(options.workers, "workers")
    lock = claim_folder(Path(options.out), ranks, job.kind, options.overwrite)
    try:
        if ranks.main and options.reserved:
            note_reserved(options.out, options.reserved)
        return _run(job, sources, options, ranks, status)
    finally:
        if lock is not None:
            lock.release()


def claim_folder(out: Path, ranks: Ranks, kind: str, overwrite: bool) -> FolderLock | None:
    """The main process locks the output folder and claims it for ``kind`` (:func:`folder.claim`); every
    process stops if it could not (the others learn it here)."""
    lock, problem = None, None
    if ranks.main:
        try:
            lock = FolderLock(out).acquire()
            claim(out, kind, overwrite)
        except OutputError as err:
            if lock is not None:
                lock.release()
                lock = None
            problem = str(err)
    problem = gather(problem)[0]
    if problem is not None:
        raise OutputError(problem)
    return lock


def _run(job: Job, sources: Sources, options: RunOptions, ranks: Ranks, status) -> dict:
    from tqdm.auto import tqdm

    started = time.perf_counter()
    out = Path(options.out)
    preparer = job.preparer(options.overwrite)
    share = ShareCounts(rank=ranks.rank, images=share_size(options.total, ranks) or 0)
    if status is not None:
        status.start(share_size(options.total, ranks), "image",
                     f"outputs are in {out}; the same command again skips the finished images")
    mine = lambda: shard(sources.items(job.output_files, options.reserved), ranks.rank, ranks.world)  # noqa: E731
    loader = torch.utils.data.DataLoader(
        _Prepare(preparer), sampler=_Items(mine), batch_size=None, collate_fn=_as_is, num_workers=options.workers,
        prefetch_factor=2 if options.workers else None,
        worker_init_fn=functools.partial(_start_worker, parent=os.getpid()))
    batcher = Batcher(options.batch_size, options.max_batch_tokens)
    desc = job.kind + (f" ({ranks.describe()})" if ranks.world > 1 else "")
    bar = tqdm(total=share_size(options.total, ranks), desc=desc, unit="img",
               disable=not (options.progress and ranks.main))
    flight = _Share(job, share, bar, status)
    try:
        waiting_since = time.perf_counter()
        for prepared in loader:
            waited = time.perf_counter() - waiting_since
            # Without workers the decoding happened inside that wait: count it once, as decoding.
            share.seconds["waiting"] += waited if options.workers else max(0.0, waited - prepared.seconds)
            share.seconds["decode"] += prepared.seconds
            flight.take(prepared, batcher)
            waiting_since = time.perf_counter()
        for group in batcher.drain():
            flight.compute(group)
        flight.collect(block=True)
    finally:
        flight.stop()
    share.seconds["wall"] = time.perf_counter() - started
    return _finish(job, preparer, options, ranks, share, mine)


def _finish(job: Job, preparer: Preparer, options: RunOptions, ranks: Ranks, share: ShareCounts, mine) -> dict:
    """The end every process meets at: COCO parts, the counts merged; the main process writes the files."""
    part = None if options.coco is None else coco_file.part_path(Path(options.coco), ranks.rank)
    if part is not None:
        coco_file.write_part(part, _coco_rows(job, preparer, mine()))
    try:
        shares = gather(share)  # every process waits here for the others (and for their COCO parts)
    except BaseException:
        if part is not None:  # another process stopped: no COCO file will be merged from this part
            part.unlink(missing_ok=True)
        raise
    summary = merge(shares)
    if ranks.main:
        listed = write_bad_list(bad_list_path(Path(options.out), options.inputs), shares)
        summary["bad_files"] = None if listed is None else str(listed)
        if options.coco is not None:
            coco = Path(options.coco)
            parts = [coco_file.part_path(coco, rank) for rank in range(ranks.world)]
            info = {"description": f"fgdense {job.kind} results", "model": job.model_name,
                    "output_folder": str(options.out)}
            summary["coco"] = {"file": str(coco), **coco_file.merge_parts(coco, parts, job.categories(), info)}
        if options.summary is not None:
            write_json(options.summary, summary)
    return summary


def _coco_rows(job: Job, preparer: Preparer, items):
    """(image entry, annotations) of every image of this share whose outputs are complete, from its JSON."""
    import json

    for item in items:
        if item.problem is not None:
            continue
        paths = [preparer.out / name for name in job.output_files(item.name)]
        if not outputs_complete(paths, run_hash(preparer.settings, item)):
            continue
        payload = json.loads((preparer.out / f"{item.name}.json").read_text(encoding="utf-8"))
        (height, width), annotations = job.coco_annotations(payload)
        image = {"id": item.index + 1, "file_name": payload["image"], "height": height, "width": width}
        yield image, annotations


__all__ = ["Batcher", "RunOptions", "describe", "run", "share_size"]
