"""Write a tiny random FG-CLIP 2 checkpoint folder (config, safetensors, preprocessor, tokenizer).

    python tools/make_tiny_checkpoint.py OUT_DIR [--seed N]

For offline smoke runs, demos and tests: every fgdense loader and tool accepts it. Its outputs are
random, not meaningful.
"""

import argparse
import sys

from fgdense.cli import fail
from fgdense.model.tiny import make_tiny_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write (created; existing files are overwritten)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    parser.add_argument("--hidden", type=int, default=64, help="width of both towers (default 64)")
    parser.add_argument("--layers", type=int, default=2, help="layers of both towers (default 2)")
    args = parser.parse_args(argv)
    if args.hidden < 4 or args.hidden % 4:
        return fail(f"--hidden must be a positive multiple of 4 (4 attention heads), got {args.hidden}")
    if args.layers < 1:
        return fail(f"--layers must be at least 1, got {args.layers}")
    try:
        out = make_tiny_checkpoint(args.out_dir, seed=args.seed, hidden=args.hidden, layers=args.layers)
    except OSError as err:
        return fail(f"cannot write {args.out_dir}: {err.strerror or err}")
    print(f"wrote tiny FG-CLIP 2 checkpoint to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
