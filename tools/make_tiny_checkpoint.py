"""Write a tiny random FG-CLIP 2 checkpoint folder (config, safetensors, preprocessor, tokenizer).

    python tools/make_tiny_checkpoint.py OUT_DIR [--seed N] [--hidden 64] [--layers 2] [--no-text-mask]

For offline smoke runs, demos and tests: every fgdense loader and tool accepts it. Its outputs are
random, not meaningful. --no-text-mask gives it a tokenizer that returns no attention mask (as
SigLIP's), the other kind the text policy handles.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def work(argv) -> int:
    parser = cli.parser(__doc__.splitlines()[0], model=False, device=False, precision=None, text_mask=False)
    parser.add_argument("out_dir", help="folder to write (created; existing checkpoint files in it are replaced)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    parser.add_argument("--hidden", type=int, default=64, help="width of both towers (default 64)")
    parser.add_argument("--layers", type=int, default=2, help="layers of both towers (default 2)")
    parser.add_argument("--no-text-mask", action="store_true",
                        help="a tokenizer that returns input ids only, no attention mask")
    args = parser.parse_args(argv)
    if not 4 <= args.hidden <= 1024 or args.hidden % 4:
        return cli.fail(f"--hidden must be a multiple of 4 (4 attention heads) from 4 to 1024, got {args.hidden}")
    if not 1 <= args.layers <= 24:
        return cli.fail(f"--layers must be from 1 to 24, got {args.layers}")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        return cli.fail(f"{out} is a file, not a folder")

    from fgdense.tiny import make_tiny_checkpoint

    try:
        make_tiny_checkpoint(out, seed=args.seed, hidden=args.hidden, layers=args.layers,
                             attention_mask=not args.no_text_mask)
    except OSError as err:
        return cli.fail(f"cannot write {out}: {err.strerror or err}")
    print(f"wrote tiny FG-CLIP 2 checkpoint to {out}")
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
