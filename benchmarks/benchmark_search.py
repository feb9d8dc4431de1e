"""tools/search.py on a generated collection: index time (the tool, end to end and per image) and query
latency (the library, model loaded; and the tool, one process per query), on this machine.

    python benchmarks/benchmark_search.py [--images 1000] [--size 96x72] [--regions] [--queries 20]

The collection is generated: small JPEGs of coloured shapes on noise, all at ``--size``. The model is
the tiny checkpoint (``fgdense.tiny``): the numbers measure the pipeline and the index, not a released
model's arithmetic (a base checkpoint's vision tower is far slower per image; see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from benchmarks.harness import describe_machine, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["a red car", "一只猫", "a blue circle on a grey background", "红色的正方形", "a green triangle", "蓝天白云"]


def make_collection(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 120, (h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = rng.integers(0, w - 10), rng.integers(0, h - 10)
            box = [int(x), int(y), int(x + rng.integers(8, w // 2)), int(y + rng.integers(8, h // 2))]
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour)
        image.save(folder / f"img_{i:05d}.jpg", quality=90)


def tool(*args) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "search.py"), *map(str, args)], capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", default="96x72", help="WxH of every generated image")
    parser.add_argument("--regions", action="store_true", help="index region embeddings too (grid proposals)")
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    from fgdense.embed import Embedder
    from fgdense.search import SearchIndex, search
    from fgdense.tiny import make_tiny_checkpoint

    print(describe_machine(machine_info("cpu")))
    with tempfile.TemporaryDirectory(prefix="fgdense-search-bench-") as tmp:
        tmp = Path(tmp)
        make_collection(tmp / "photos", args.images, size)
        checkpoint = make_tiny_checkpoint(tmp / "tiny", seed=0)
        flags = ["--model", checkpoint, "--device", "cpu", "--quiet", "--precision", "fp32"]
        build = tool("index", tmp / "photos", "--out", tmp / "index", *flags, *(["--regions"] if args.regions else []))
        resume = tool("index", tmp / "photos", "--out", tmp / "index", *flags, *(["--regions"] if args.regions else []))
        index = SearchIndex.open(tmp / "index")
        embedder = Embedder.from_pretrained(checkpoint, device="cpu")
        search(embedder, index, QUERIES[0], 10)  # warm-up
        latencies, repeated = [], []
        for n in range(args.queries):  # every text new: its encoding is part of the latency
            text = f"{QUERIES[n % len(QUERIES)]} {n}"
            start = time.perf_counter()
            search(embedder, index, text, 10, regions=args.regions and n % 2 == 1)
            latencies.append(time.perf_counter() - start)
            start = time.perf_counter()  # the same text again: its embedding is cached, only the scoring runs
            search(embedder, index, text, 10, regions=args.regions and n % 2 == 1)
            repeated.append(time.perf_counter() - start)
        one_shot = tool("query", tmp / "index", "一只猫", "--out", tmp / "answer", "--device", "cpu", "--quiet")
        size_mb = sum(p.stat().st_size for p in (tmp / "index").glob("*.*")) / 1e6
        result = {"images": len(index.images), "regions": len(index.regions), "image_size": args.size,
                  "index_s": round(build, 2), "index_ms_per_image": round(1000 * build / args.images, 2),
                  "rebuild_all_skipped_s": round(resume, 2),
                  "query_ms_median": round(1000 * statistics.median(latencies), 2),
                  "query_ms_max": round(1000 * max(latencies), 2),
                  "repeated_query_ms_median": round(1000 * statistics.median(repeated), 3),
                  "tool_query_s": round(one_shot, 2),
                  "index_files_mb": round(size_mb, 2)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
