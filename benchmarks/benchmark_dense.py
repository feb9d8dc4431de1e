"""Dense-feature speed and peak memory: fgdense's fast path against the official formulation.

    python benchmarks/benchmark_dense.py                  # GPU: base + so400m at 256..16384 patches, bf16
                                                          # CPU: base at 256, 1024, 4096 patches, fp32
    python benchmarks/benchmark_dense.py --arch base --patches 256 1024 4096 --device cpu --out dense-cpu.json
    python benchmarks/benchmark_dense.py --arch so400m --patches 16384 --paths fast --device cuda

Random weights in the real vision architectures (speed and memory do not depend on the values), one
image per forward. Each (architecture, budget, path) runs in its own process: time per image is the
median of --repeats runs after --warmup runs, peak memory is torch.cuda.max_memory_allocated on a GPU
and the process peak RSS on a CPU. A configuration that does not fit (in the device, or under
--memory-cap) is reported as "out of memory". Prints a markdown table; --out X.json also writes X.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: fgdense and benchmarks

import argparse  # noqa: E402
import json  # noqa: E402

from benchmarks.dense import PATHS, dense_markdown, run_dense_benchmark  # noqa: E402
from benchmarks.harness import DTYPES, GIB  # noqa: E402
from fgdense import cli  # noqa: E402
from fgdense.config import ARCHITECTURES  # noqa: E402
from fgdense.errors import OutputError  # noqa: E402
from fgdense.io.files import check_outputs, write_all, write_text  # noqa: E402

PUBLIC_ARCHS = ("base", "so400m")  # "tiny" also works: for tests and quick checks


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", choices=list(ARCHITECTURES), metavar="ARCH",
                        help=f"architectures: {', '.join(PUBLIC_ARCHS)} (default: both on a GPU, base on a CPU); "
                             "also large, and tiny for tests")
    parser.add_argument("--patches", nargs="+", type=int,
                        help="patch budgets (default 256 1024 4096 16384 on a GPU; 256 1024 4096 on a CPU, where "
                             "the official formulation needs a 12 GiB mask at 16384)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="which paths (default both)")
    parser.add_argument("--repeats", type=int, help="timed runs per configuration (default 10 on a GPU, 3 on a CPU)")
    parser.add_argument("--warmup", type=int, help="untimed runs first (default 3 on a GPU, 1 on a CPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                        help="weights and compute dtype of both paths (auto: bf16 on a GPU, fp32 on a CPU)")
    parser.add_argument("--memory-cap", type=float, metavar="GIB",
                        help="fail allocations beyond this many GiB (GPU: allocator cap; CPU: address-space "
                             "limit, libraries included); such configurations read 'out of memory'")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="give up on a configuration after this long")
    parser.add_argument("--out", help="write the JSON report here (must end in .json); the markdown goes next to it (.md)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def check_args(args):
    """User mistakes, found before anything runs or is written."""
    if args.patches is not None and any(p < 4 for p in args.patches):
        return "--patches must be at least 4 each"
    if args.repeats is not None and args.repeats < 1:
        return "--repeats must be at least 1"
    if args.warmup is not None and args.warmup < 0:
        return "--warmup must not be negative"
    if args.memory_cap is not None and args.memory_cap <= 0:
        return "--memory-cap must be positive"
    if args.timeout is not None and args.timeout <= 0:
        return "--timeout must be positive"
    if args.out:
        if not args.out.endswith(".json"):
            return f"--out {args.out} must end in .json (the markdown is written next to it as .md)"
        try:
            check_outputs({"--out": args.out, "its markdown": str(Path(args.out).with_suffix(".md"))})
        except OutputError as err:
            return str(err)
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        return cli.fail(problem)
    device = cli.device_of(args.device)
    gpu = device.type == "cuda"
    report = run_dense_benchmark(
        archs=args.arch or (["base", "so400m"] if gpu else ["base"]),
        patches=args.patches or ([256, 1024, 4096, 16384] if gpu else [256, 1024, 4096]),
        paths=args.paths,
        device=device,
        dtype=args.dtype if args.dtype != "auto" else ("bf16" if gpu else "fp32"),
        warmup=args.warmup if args.warmup is not None else (3 if gpu else 1),
        repeats=args.repeats or (10 if gpu else 3),
        memory_cap_bytes=int(args.memory_cap * GIB) if args.memory_cap else None,
        timeout=args.timeout,
        progress=not args.quiet,
    )
    markdown = dense_markdown(report)
    print(markdown)
    for ratio in report["ratios"]:
        print(f"{ratio['arch']} at {ratio['patches']} patches: fast/official time {ratio['time']:.2f}x, "
              f"peak memory {ratio['memory']:.2f}x")
    if args.out:
        out = Path(args.out)
        write_all([(out.with_suffix(".md"), write_text(markdown)),
                   (out, write_text(json.dumps(report, indent=2) + "\n"))])
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
