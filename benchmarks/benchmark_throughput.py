"""Images per second of tools/segment.py on a folder of real-size photographs: one process against torchrun's.

    python benchmarks/benchmark_throughput.py                                  # CPU: 1 process vs 2, 64 photos
    python benchmarks/benchmark_throughput.py --device cuda --processes 1 8 --images 512       # 1 GPU vs 8

Writes --images JPEG photographs of --size (scikit-image's sample photographs, cropped to fill the size,
each one a different crop) and a random-weight checkpoint of --arch (benchmarks.harness.random_checkpoint;
speed does not depend on the weights), then runs the real command, as a user would, once per entry of
--processes: ``python tools/segment.py PHOTOS --labels ... --max-patches 1024`` for 1, ``torchrun
--nproc_per_node N tools/segment.py ...`` for N (on GPUs one per process; on CPUs torchrun gives each
process one thread). Each run starts on an empty output folder and writes all four outputs per image.

Reported per run: images/s over the run itself (from the tool's --summary: after the model is loaded)
and end to end (the command's whole wall time, start-up included); and where the time went, in seconds
per image summed over the processes: decode (DataLoader workers: reading, decoding, NaFlex processing),
model (the task: dense pass, scores, label maps), write (pictures and files), and the model's process
waiting for decoded images. The machine and its load average (other users of a shared machine slow every
number) head the table.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: fgdense and benchmarks

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from benchmarks.harness import ROOT, describe_architecture, describe_machine, machine_info  # noqa: E402
from fgdense import cli  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
LABELS = ["电脑", "cat", "人|person", "天空", "rocket"]


def write_photos(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """``count`` JPEGs of width x height: sample photographs scaled to cover the size, each a different crop."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    sources = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        photo = sources[i % len(sources)]
        scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.3)
        big = photo.resize((max(width, round(photo.width * scale)), max(height, round(photo.height * scale))),
                           Image.BICUBIC)
        x, y = int(rng.integers(0, big.width - width + 1)), int(rng.integers(0, big.height - height + 1))
        path = folder / f"{i:03d}_{PHOTOS[i % len(PHOTOS)]}.jpg"
        big.crop((x, y, x + width, y + height)).save(path, quality=90)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def segment_command(processes: int, photos: Path, checkpoint: Path, out: Path, summary: Path, args) -> list[str]:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(free_port())]
    return launcher + [str(ROOT / "tools" / "segment.py"), str(photos), "--labels", *LABELS, "--model", str(checkpoint),
                       "--out", str(out), "--max-patches", str(args.max_patches), "--device", args.device,
                       "--workers", args.workers, "--summary", str(summary), "--quiet"]


def measure(processes: int, photos: Path, checkpoint: Path, work: Path, args) -> dict:
    out, summary = work / f"out_{processes}", work / f"summary_{processes}.json"
    command = segment_command(processes, photos, checkpoint, out, summary, args)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not summary.is_file():
        # The tool's own one-line error if there is one (torchrun adds its report after it).
        lines = [line for line in done.stderr.splitlines() if line.startswith(("error:", "interrupted:"))]
        lines = lines or [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("=")]
        return {"processes": processes, "status": "error", "detail": lines[-1] if lines else f"exit {done.returncode}",
                "stderr_tail": done.stderr[-4000:]}
    report = json.loads(summary.read_text())
    images = report["written"]
    per_image = {k: v / max(images, 1) for k, v in report["seconds_summed_over_processes"].items()}
    return {"processes": processes, "status": "ok", "images": images, "bad": report["bad"],
            "run_s": report["wall_s"], "end_to_end_s": round(seconds, 3),
            "images_per_s": images / report["wall_s"], "images_per_s_end_to_end": images / seconds,
            "seconds_per_image": per_image, "command": " ".join(command)}


def markdown(rows: list[dict]) -> str:
    lines = ["| processes | images/s (run) | images/s (end to end) | decode s/img | model s/img | write s/img "
             "| waiting s/img |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['processes']} | {row['status']}: {row['detail']} | | | | | |")
            continue
        s = row["seconds_per_image"]
        lines.append(f"| {row['processes']} | {row['images_per_s']:.3f} | {row['images_per_s_end_to_end']:.3f} | "
                     f"{s['decode']:.3f} | {s['model']:.3f} | {s['write']:.3f} | {s['waiting']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="base", choices=["tiny", "base", "large", "so400m"], help="(default base)")
    parser.add_argument("--images", type=int, default=64, help="photographs (default 64)")
    parser.add_argument("--size", default="1280x960", help="WIDTHxHEIGHT of each photograph (default 1280x960)")
    parser.add_argument("--max-patches", type=int, default=1024, help="patch budget (default 1024)")
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2], help="runs: processes each (default 1 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (one GPU per process)")
    parser.add_argument("--workers", default="auto", help="tools/segment.py --workers (default auto)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run at most (default 3600)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        return cli.fail(f"--size must be WIDTHxHEIGHT, got {args.size!r}")
    if args.images < 1 or min(args.processes) < 1 or width < 16 or height < 16:
        return cli.fail("--images and --processes must be at least 1, --size at least 16x16")
    device = cli.device_of(args.device)
    if device.type == "cuda":
        import torch

        if max(args.processes) > torch.cuda.device_count():
            return cli.fail(f"--processes {max(args.processes)} needs as many GPUs; this machine has "
                            f"{torch.cuda.device_count()}")

    from benchmarks.harness import random_checkpoint

    machine = describe_machine(machine_info(device))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        write_photos(work / "photos", args.images, width, height)
        checkpoint = random_checkpoint(args.arch, work / "checkpoint")
        print(f"{args.images} photographs of {width}x{height} and a random {args.arch} checkpoint written in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        rows = []
        for processes in args.processes:
            before = load_average()
            row = measure(processes, work / "photos", checkpoint, work, args)
            row.update(load_before=before, load_after=load_average())
            rows.append(row)
            print(f"{processes} process(es): " + (f"{row['images_per_s']:.3f} images/s" if row["status"] == "ok"
                                                  else f"{row['status']} ({row['detail']})"), file=sys.stderr)
    print(f"Machine: {machine}")
    print(f"tools/segment.py, {describe_architecture(args.arch)} (random weights), {args.images} JPEG photographs of "
          f"{width}x{height}, {args.max_patches} patches, {len(LABELS)} labels, all four outputs per image, "
          f"--workers {args.workers}, device {args.device}")
    for row in rows:
        print(f"load average (1, 5, 15 min) around the {row['processes']}-process run: before {row['load_before']}; "
              f"after {row['load_after']}")
    print()
    print(markdown(rows))
    if args.out:
        from fgdense.io.files import write_json

        write_json(args.out, {"machine": machine, "arch": args.arch, "images": args.images, "size": [width, height],
                              "max_patches": args.max_patches, "rows": rows})
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(cli.run(main))
