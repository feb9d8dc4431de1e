"""Write the shapes world: a small learnable set of coloured, textured shapes named in English and Chinese.

    python tools/make_shapes_world.py OUT_DIR [--train 300] [--val 100] [--seed 0] [--no-textures]
        [--backgrounds flat textured] [--sizes small large] [--colours red green ...]

Writes COCO instances with masks (train/instances.json; val/instances.json for the trained categories,
val/instances_novel.json for the held-out colour-shape combinations), a names file (names.json), FineHARD
records of the training images (finehard/), and VOC-style label PNGs ({train,val}/masks/, classes.txt
with background first). Train and val images are disjoint. See fgdense/train/shapes_world.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def work(argv=None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], model=False, device=False, precision=None, text_mask=False)
    parser.add_argument("out_dir", help="folder to write (created; it must be empty or not exist, unless --overwrite)")
    parser.add_argument("--train", type=int, default=300, help="training images (default 300)")
    parser.add_argument("--val", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--min-side", type=int, default=80, help="smallest image side in pixels (default 80)")
    parser.add_argument("--max-side", type=int, default=112, help="largest image side in pixels (default 112)")
    parser.add_argument("--no-textures", action="store_true", help="solid objects only (an easier world)")
    parser.add_argument("--backgrounds", nargs="+", default=["flat"], choices=["flat", "textured"],
                        help="backgrounds drawn per image: flat grey and/or textured grey (default flat)")
    parser.add_argument("--sizes", nargs="+", default=["small", "large"], choices=["small", "large"],
                        help="object sizes drawn per object (default small large)")
    parser.add_argument("--colours", nargs="+", help="colours of the world (default red green blue yellow; "
                                                       "also purple orange cyan)")
    parser.add_argument("--no-held-out", action="store_true", help="train on every colour-shape combination")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder that already has files (a world's files there are replaced)")
    args = parser.parse_args(argv)
    if not 1 <= args.train <= 1_000_000 or not 0 <= args.val <= 1_000_000:
        return cli.fail("--train must be 1 to 1000000 and --val 0 to 1000000")
    if not 32 <= args.min_side <= args.max_side <= 4096:
        return cli.fail(f"image sides must satisfy 32 <= --min-side <= --max-side <= 4096, got {args.min_side} "
                        f"and {args.max_side}")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        return cli.fail(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        return cli.fail(f"{out} already has files; choose an empty or new folder (or --overwrite to write into it)")

    from fgdense.train.shapes_world import make_shapes_world

    changes = dict(num_train=args.train, num_val=args.val, seed=args.seed, image_size=(args.min_side, args.max_side),
                   backgrounds=tuple(args.backgrounds), sizes=tuple(args.sizes))
    if args.colours:
        changes["colours"] = tuple(args.colours)
        # One held-out combination per colour while shapes last, as the default Latin square.
        changes["held_out"] = tuple((c, s) for c, s in zip(args.colours, ("cross", "triangle", "square", "circle")))
    if args.no_textures:
        changes["textures"] = ("solid",)
    if args.no_held_out:
        changes["held_out"] = ()
    try:
        world = make_shapes_world(out, progress=not args.quiet, **changes)
    except OSError as err:
        return cli.fail(f"cannot write {args.out_dir}: {err.strerror or err}")
    except ValueError as err:
        return cli.fail(str(err))
    print(f"wrote the shapes world to {world['root']}: {world['seen_categories']} trained categories of "
          f"{world['categories']}, {args.train} training images ({world['train_boxes']} boxes), {args.val} validation "
          f"images ({world['val_boxes']} boxes of trained categories, {world['val_novel_boxes']} of held-out ones)")
    print(f"  train: --cfg-options ann_file={world['train_ann']} image_root={world['train_images']}")
    print(f"  evaluate: python tools/eval_boxclass.py --ann {world['val_ann']} --images {world['val_images']} --model CKPT")
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
