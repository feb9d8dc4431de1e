"""torchrun, two CPU processes (gloo): a manifest's images each written exactly once across the ranks, a run
killed half-way finished by the next without redoing what was done, and the COCO file equal to the label maps."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bulk import check_coco_equals_label_maps, photos

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(checkpoint, *extra):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            str(ROOT / "tools" / "segment.py"), "manifest.txt", "--labels", "red", "蓝色|blue", "--model", str(checkpoint),
            "--out", "out", "--max-patches", "64", "--threshold", "none", "--quiet", "--workers", "0",
            "--batch-size", "1", *extra]


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun starts its ranks in sessions of their own)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The parent id is the 4th field after the ")" that ends the command name.
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def complete(out: Path) -> dict:
    """Images whose four outputs are all there: stem -> the files' modification times."""
    found = {}
    for data in out.glob("*.json"):
        stem = data.stem
        files = [out / f"{stem}{suffix}" for suffix in (".json", "_labels.png", "_overlay.png", "_heatmaps.png")]
        if all(f.is_file() for f in files):
            found[stem] = [f.stat().st_mtime_ns for f in files]
    return found


@pytest.mark.slow
def test_two_ranks_write_each_image_once_and_a_killed_run_is_finished_by_the_next(tmp_path, tiny_checkpoint):
    photos(tmp_path / "imgs", IMAGES, sizes=((360, 480), (480, 360)))
    (tmp_path / "manifest.txt").write_text("".join(f"imgs/p{i:02d}.jpg\n" for i in range(IMAGES)))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = tmp_path / "out"

    # Killed half-way (SIGKILL to torchrun and both ranks: a crash, no chance to clean up).
    first = subprocess.Popen(command(tiny_checkpoint), cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(complete(out)) < 6 and first.poll() is None:
        time.sleep(0.01)
    for pid in process_tree(first.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    first.wait(timeout=60)
    time.sleep(0.5)
    done = complete(out)
    assert 0 < len(done) < IMAGES, f"{len(done)} images done when the run was killed: no half-way point"

    # The rerun: the done images are skipped (untouched), the rest written once each, by one rank or the other.
    second = subprocess.run(command(tiny_checkpoint, "--coco", "out/coco.json", "--summary", "summary.json"),
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["processes"] == 2 and [p["images"] for p in summary["per_process"]] == [IMAGES // 2] * 2
    assert summary["skipped_complete"] == len(done)
    assert summary["written"] == IMAGES - len(done)
    assert all(p["written"] > 0 for p in summary["per_process"])  # both ranks had work left, and did it
    after = complete(out)
    assert len(after) == IMAGES  # every image complete, and written once: IMAGES - done writes for as many images
    assert {stem: after[stem] for stem in done} == done  # nothing done was redone
    assert f"{len(done)} skipped" in second.stdout
    check_coco_equals_label_maps(out / "coco.json", out, IMAGES)
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]  # the ranks' COCO parts are merged away


def test_a_rank_stopped_by_a_user_error_leaves_every_rank_one_line(tmp_path, tiny_checkpoint):
    """Rank 1 cannot write p01's JSON (a folder has its name) and stops with its error; rank 0, which meets it
    at the end, says in one line that another process stopped, instead of gloo's "Connection closed by peer"."""
    photos(tmp_path / "imgs", 4)
    (tmp_path / "out" / "p01.json").mkdir(parents=True)
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            "--log-dir", "logs", "--redirects", "3", str(ROOT / "tools" / "segment.py"), "imgs", "--labels", "red",
            "--model", str(tiny_checkpoint), "--out", "out", "--max-patches", "16", "--quiet", "--workers", "0",
            "--no-png"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    logs = {int(p.parent.name): p.read_text().strip().splitlines() for p in (tmp_path / "logs").rglob("stderr.log")}
    assert sorted(logs) == [0, 1] and all(len(lines) == 1 for lines in logs.values()), logs
    assert logs[1][0] == "error: out/p01.json is a folder; name a file to write"
    assert logs[0][0].startswith(("error: rank 0: another process of this torchrun run stopped",
                                  "interrupted (SIGTERM)"))  # or torchrun ended it first: one line either way
