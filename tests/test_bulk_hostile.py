"""Bulk runs against hostile use (issue 21): two runs into one folder, images replaced in place, the run's
own list given back as its input, odd file names, SIGTERM and kill -9 of the main process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from test_bulk import photos, tool
from test_bulk_torchrun import process_tree

ROOT = Path(__file__).resolve().parents[1]


def segment_args(checkpoint, out, *sources):
    return [*map(str, sources), "--labels", "red", "blue", "--model", str(checkpoint), "--out", str(out),
            "--max-patches", "16", "--threshold", "none", "--quiet", "--workers", "0", "--no-png"]


def test_a_second_run_into_a_folder_in_use_stops_in_one_line_naming_the_first(tmp_path, tiny_checkpoint, capsys):
    photos(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from fgdense.bulk.folder import FolderLock; FolderLock(sys.argv[1]).acquire();"
         " print('held', flush=True); sys.stdin.read()", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == "held"
        code = tool("segment")(segment_args(tiny_checkpoint, out, tmp_path / "imgs"))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, err
        assert "is in use by another run" in err[0] and f"process {holder.pid} " in err[0]
        assert not list(out.glob("*.json"))  # nothing written beside the other run
    finally:
        holder.kill()  # kill -9: the lock file stays behind, but the kernel has dropped its lock
        holder.wait()
    assert (out / ".fgdense-run.lock").is_file()
    assert tool("segment")(segment_args(tiny_checkpoint, out, tmp_path / "imgs")) == 0
    assert "2 written" in capsys.readouterr().out
    assert not (out / ".fgdense-run.lock").exists()  # removed at the end of the run that held it


def test_another_tool_into_a_folder_of_outputs_stops_before_writing_over_them(tmp_path, tiny_checkpoint, capsys):
    """Every tool names an image's JSON NAME.json: grounding into a folder of segmentations would replace
    them one by one. It stops in one line, unless --overwrite says to replace them."""
    photos(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    assert tool("segment")(segment_args(tiny_checkpoint, out, tmp_path / "imgs")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    ground = [str(tmp_path / "imgs"), "--phrases", "a red thing", "--model", str(tiny_checkpoint), "--out", str(out),
              "--max-patches", "16", "--quiet", "--workers", "0", "--no-png"]
    assert tool("ground")(ground) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: the output folder {out} holds the outputs of a 'segment' run"), err
    assert "--overwrite" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, nothing left behind
    # The same tool again is a rerun (its images skipped); --overwrite lets the other tool replace them.
    assert tool("segment")(segment_args(tiny_checkpoint, out, tmp_path / "imgs")) == 0
    assert "2 skipped" in capsys.readouterr().out
    assert tool("ground")([*ground, "--overwrite"]) == 0
    assert "phrases" in json.loads((out / "p00.json").read_text())
    assert (out / ".fgdense-job.txt").read_text() == "ground\n"


def _segment_refused(tmp_path, checkpoint, capsys, out, stem: str) -> str:
    """Segment an image named ``stem``.jpg into ``out``, where another run's file ``stem``.json is (the name
    the image's JSON would take): the run must stop in one line with that file untouched; the line."""
    kept = (out / f"{stem}.json").read_bytes()
    (tmp_path / "imgs-of-one").mkdir()
    Image.new("RGB", (32, 24), "red").save(tmp_path / "imgs-of-one" / f"{stem}.jpg")
    capsys.readouterr()
    assert tool("segment")(segment_args(checkpoint, out, tmp_path / "imgs-of-one")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: the output folder {out} holds the outputs of"), err
    assert (out / f"{stem}.json").read_bytes() == kept
    return err[0]


def test_a_bulk_tool_and_an_evaluation_never_share_a_folder(tmp_path, tiny_checkpoint, capsys):
    """An evaluation's report.json is what a bulk tool writes for an image named report.jpg: segmenting
    into an evaluation's folder used to replace the report (the evaluation's records/ folder held the
    claim, not the folder itself), and an evaluation into a folder of segmentations replaced that image's
    JSON. Each stops in one line before writing; --overwrite lets it replace them."""
    from test_eval_fgovd import make_set

    ann, images = make_set(tmp_path / "set")
    evaluation = ["--ann", str(ann), "--images", str(images), "--model", str(tiny_checkpoint), "--quiet",
                  "--workers", "0", "--max-patches", "16"]
    out = tmp_path / "eval"
    assert tool("eval_fgovd")([*evaluation, "--out", str(out)]) == 0
    err = _segment_refused(tmp_path, tiny_checkpoint, capsys, out, "report")
    assert "holds the outputs of a 'evaluation' run" in err and "--overwrite" in err, err
    segmented = tmp_path / "seg"
    assert tool("segment")(segment_args(tiny_checkpoint, segmented, tmp_path / "imgs-of-one")) == 0
    image_json = (segmented / "report.json").read_bytes()
    capsys.readouterr()
    assert tool("eval_fgovd")([*evaluation, "--out", str(segmented)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds the outputs of a 'segment' run" in err[0], err
    assert (segmented / "report.json").read_bytes() == image_json and not (segmented / "records").exists()
    assert tool("eval_fgovd")([*evaluation, "--out", str(out)]) == 0  # the same evaluation again: a rerun
    assert tool("eval_fgovd")([*evaluation, "--out", str(segmented), "--overwrite"]) == 0


def test_an_image_replaced_in_place_is_redone_and_the_others_skipped(tmp_path, tiny_checkpoint, capsys):
    images = photos(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    main = tool("segment")
    assert main(segment_args(tiny_checkpoint, out, tmp_path / "imgs")) == 0
    capsys.readouterr()
    assert json.loads((out / "p01.json").read_text())["image_size_hw"] != [100, 100]
    # The same name, other content: a 100x100 picture (as `cp other.jpg p01.jpg` would leave it).
    Image.new("RGB", (100, 100), (10, 200, 10)).save(images[1])
    assert main(segment_args(tiny_checkpoint, out, tmp_path / "imgs")) == 0
    printed = capsys.readouterr().out
    assert "1 written to" in printed and "2 skipped" in printed
    assert json.loads((out / "p01.json").read_text())["image_size_hw"] == [100, 100]
    # Touched only (same bytes, new modification time): redone too, as make or rsync would.
    os.utime(images[2], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert main(segment_args(tiny_checkpoint, out, tmp_path / "imgs")) == 0
    printed = capsys.readouterr().out
    assert "1 written to" in printed and "2 skipped" in printed


def test_the_bad_list_given_back_as_the_input_is_never_written_over_or_deleted(tmp_path, tiny_checkpoint, capsys):
    images = photos(tmp_path / "imgs", 2)
    (tmp_path / "list.txt").write_text(f"{images[0]}\n{tmp_path / 'imgs' / 'late.jpg'}\n")
    out = tmp_path / "out"
    main = tool("segment")
    assert main(segment_args(tiny_checkpoint, out, tmp_path / "list.txt")) == 1
    listed = out / "bad_files.jsonl"
    original = listed.read_bytes()
    assert b"late.jpg" in original
    # Retried as it is (still missing): listed in the retry list; the input stays as it was.
    capsys.readouterr()
    assert main(segment_args(tiny_checkpoint, out, listed)) == 1
    err = capsys.readouterr().err
    assert listed.read_bytes() == original and "bad_files.retry.jsonl" in err
    assert b"late.jpg" in (out / "bad_files.retry.jsonl").read_bytes()
    # Fixed and retried: done; the input list is still there, the retry list (no bad files now) is gone.
    images[1].rename(tmp_path / "imgs" / "late.jpg")
    assert main(segment_args(tiny_checkpoint, out, listed)) == 0
    assert listed.read_bytes() == original and not (out / "bad_files.retry.jsonl").exists()
    assert (out / "late.json").is_file()


def test_non_utf8_and_too_long_file_names_are_written_or_listed_never_a_stop(tmp_path, tiny_checkpoint, capsys):
    folder = tmp_path / "imgs"
    photos(folder, 1)
    odd = os.fsdecode(b"\xff")  # a name that is not UTF-8
    (folder / "p00.jpg").rename(folder / f"{odd}.jpg")
    (folder / f"{odd}cut.jpg").write_bytes(b"not an image")
    Image.new("RGB", (40, 30)).save(folder / ("y" * 240 + ".png"))  # a legal name; its outputs' names are not
    out = tmp_path / "out"
    summary = tmp_path / "summary.json"
    code = tool("segment")(segment_args(tiny_checkpoint, out, folder) + ["--summary", str(summary)])
    assert code == 1
    assert capsys.readouterr().err.strip().startswith("error: 2 of 3 image(s) could not be used")
    assert json.loads(summary.read_text())["bad_by_reason"] == {"name_too_long": 1, "unreadable": 1}
    assert json.loads((out / f"{odd}.json").read_text())["image"] == str(folder / f"{odd}.jpg")
    bad = [json.loads(line) for line in (out / "bad_files.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {os.fsencode(Path(b["path"]).name) for b in bad} == {b"\xffcut.jpg", b"y" * 240 + b".png"}
    # The list read back as a manifest names the very files (their bytes), for a retry.
    from fgdense.io.sources import Sources

    again = {os.fsencode(item.path) for item in Sources([out / "bad_files.jsonl"]).items()}
    assert again == {os.fsencode(folder / f"{odd}cut.jpg"), os.fsencode(folder / ("y" * 240 + ".png"))}


def _workers_of(pid: int) -> list[int]:
    return [p for p in process_tree(pid) if p != pid]


def _start_slow_run(tmp_path, checkpoint, signal_at: int):
    """The segment tool with one worker on 40 images, pictures on; returns it once ``signal_at`` are written."""
    photos(tmp_path / "imgs", 40, sizes=((360, 480), (480, 360)))
    out = tmp_path / "out"
    argv = [sys.executable, str(ROOT / "tools" / "segment.py"), str(tmp_path / "imgs"), "--labels", "red", "blue",
            "--model", str(checkpoint), "--out", str(out), "--max-patches", "64", "--quiet", "--workers", "1",
            "--batch-size", "1"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.json"))) < signal_at and run.poll() is None:
        time.sleep(0.02)
    assert run.poll() is None, run.communicate()[1][-2000:]
    assert _workers_of(run.pid), "the run has no worker process"
    return run, out


def _gone(pids, seconds=10.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists()
                 and (Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_sigterm_ends_a_run_as_ctrl_c_does_with_exit_code_143(tmp_path, tiny_checkpoint):
    run, out = _start_slow_run(tmp_path, tiny_checkpoint, signal_at=2)
    workers = _workers_of(run.pid)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted (SIGTERM): "), lines
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".lock")]
    assert _gone(workers)


def test_a_killed_main_process_takes_its_workers_with_it(tmp_path, tiny_checkpoint):
    run, _ = _start_slow_run(tmp_path, tiny_checkpoint, signal_at=1)
    workers = _workers_of(run.pid)
    run.kill()
    run.communicate(timeout=60)
    try:
        assert _gone(workers), "a worker outlived its killed parent"
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_workers_bound_counts_cpus_memory_and_the_processes_of_a_machine(monkeypatch):
    import pytest

    from fgdense.bulk import workers
    from fgdense.errors import FGDenseError

    monkeypatch.setattr(workers, "cpus", lambda: 8)
    monkeypatch.setattr(workers, "available_memory", lambda: 64 * 2**30)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert workers.worker_limit() == 16  # two per CPU
    monkeypatch.setattr(workers, "available_memory", lambda: 3 * 2**30)
    assert workers.worker_limit() == 6  # 512 MiB each
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert workers.worker_limit() == 1 and workers.check_workers(1) == 1
    with pytest.raises(FGDenseError, match="--workers 2 is more than this machine can run: at most 1 .*4 processes"):
        workers.check_workers(2)


def test_a_name_the_filesystem_refuses_at_write_time_is_a_bad_file_not_a_stop(tmp_path, tiny_checkpoint, capsys,
                                                                              monkeypatch):
    """The up-front length check defeated (another filesystem's limits): the write fails, that image is listed."""
    from fgdense.io import sources

    monkeypatch.setattr(sources, "name_fits", lambda name: True)
    folder = tmp_path / "imgs"
    photos(folder, 1)
    Image.new("RGB", (40, 30)).save(folder / ("y" * 240 + ".png"))
    out = tmp_path / "out"
    assert tool("segment")(segment_args(tiny_checkpoint, out, folder)) == 1
    assert "name_unwritable 1" in capsys.readouterr().out
    assert (out / "p00.json").is_file()


def test_a_worker_watches_its_parent_where_the_kernel_does_not_end_it(tmp_path):
    """The fallback alone (PR_SET_PDEATHSIG made a no-op): a child that called die_with_parent ends within
    seconds of its parent's kill -9."""
    script = ("import os, sys, time\n"
              "from fgdense.bulk import workers\n"
              "workers.PR_SET_PDEATHSIG = 0  # prctl(0, ...) does nothing: only the watch is left\n"
              "child = os.fork()\n"
              "if child == 0:\n"
              "    workers.die_with_parent(os.getppid())\n"
              "    time.sleep(600)\n"
              "    os._exit(0)\n"
              "print(child, flush=True)\n"
              "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    child = int(parent.stdout.readline())
    try:
        time.sleep(0.5)
        assert not _gone([child], seconds=0.1)
        parent.kill()
        parent.wait()
        assert _gone([child], seconds=10)
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_filesystem_without_locks_warns_and_runs(tmp_path, monkeypatch):
    import errno

    import pytest

    from fgdense.bulk import folder

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(folder.fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="cannot be locked .*No locks available"):
        lock = folder.FolderLock(tmp_path).acquire()
    lock.release()


def test_a_huge_or_garbage_job_note_is_refused_in_a_short_line(tmp_path):
    """A note that is not fgdense's (1 MB of bytes) used to be read whole and quoted whole: a one-line error
    of megabytes (and a note of gigabytes read into memory)."""
    import pytest

    from fgdense.bulk.folder import JOB_NAME, claim
    from fgdense.errors import OutputError

    (tmp_path / JOB_NAME).write_bytes(bytes(range(256)) * 4096)
    with pytest.raises(OutputError) as refused:
        claim(tmp_path, "segment")
    assert len(str(refused.value)) < 600 and "\n" not in str(refused.value)
    claim(tmp_path, "segment", overwrite=True)
    assert (tmp_path / JOB_NAME).read_text() == "segment\n"


def test_a_job_note_that_is_not_a_file_is_named_in_the_refusal(tmp_path):
    """A folder (or a link) where the note goes was refused with "... is a folder; name a file to write",
    about a file the user never named; with --overwrite too, and a link was followed."""
    import pytest

    from fgdense.bulk.folder import JOB_NAME, claim
    from fgdense.errors import OutputError

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / JOB_NAME).mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "input.txt").write_text("mine")
    (tmp_path / "b" / JOB_NAME).symlink_to(tmp_path / "input.txt")
    for out in (tmp_path / "a", tmp_path / "b"):
        for overwrite in (False, True):
            with pytest.raises(OutputError, match=f"^{out / JOB_NAME} is not a file; fgdense notes there"):
                claim(out, "segment", overwrite)
    assert (tmp_path / "input.txt").read_text() == "mine"


def test_a_bulk_tool_never_writes_over_a_search_index(tmp_path, tiny_checkpoint, capsys):
    """A search index's index.json is what segment writes for an image named index.jpg: segmenting into an
    index folder replaced it (the index run claimed only its parts/ folder). One line, nothing written."""
    photos(tmp_path / "imgs", 2)
    out = tmp_path / "idx"
    assert tool("search")(["index", str(tmp_path / "imgs"), "--out", str(out), "--model", str(tiny_checkpoint),
                           "--max-patches", "16", "--quiet", "--workers", "0"]) == 0
    err = _segment_refused(tmp_path, tiny_checkpoint, capsys, out, "index")
    assert "holds the outputs of a 'search index' run" in err, err
