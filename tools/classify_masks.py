"""Label given masks (from SAM or any mask generator) with free-text labels, English or Chinese.

    python tools/classify_masks.py IMAGE --masks MASKS --labels cat "杯子|cup" dog [--model CKPT]
        [--out classify_masks_out] [--top-k 5] [--templates] [--max-patches checkpoint] [--no-png] [--font PATH]

MASKS, for the one image: a label PNG (each positive value one mask, 0 = none; the NAME_labels.png
tools/segment.py writes works), an .npy array of (N, H, W) booleans or an (H, W) label image, or a JSON
list of COCO RLE masks (or an object whose "masks" or "segments" hold items with an "rle", as this tool
and tools/segment.py write). Each mask gets one label, from the region embedding of its box (--pooling
box, the default) or the average of the dense features under it (--pooling mask): fgdense.classify_masks. Writes into --out NAME.json (per mask: box, area, best label,
probability softmax(100 * cosine), cosine, top-k, RLE) and NAME.png, the masks tinted by label.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402
from fgdense.defaults import REGION_MAX_PATCHES, max_patches_flag  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder (created; default ./classify_masks_out)",
                        out_default="classify_masks_out", max_patches=max_patches_flag(REGION_MAX_PATCHES),
                        font=True)
    parser.add_argument("image", help="the image the masks belong to")
    parser.add_argument("--masks", required=True, help="label PNG, .npy array or JSON of COCO RLE masks")
    parser.add_argument("--labels", nargs="*", default=[], help='labels; "cat|猫" averages synonyms')
    parser.add_argument("--labels-file", help="text file with one label per line (added to --labels)")
    parser.add_argument("--top-k", type=int, default=5, help="labels listed per mask (default 5)")
    parser.add_argument("--templates", action="store_true", help="average prompt templates (a photo of a ...)")
    parser.add_argument("--pooling", choices=["box", "mask"], default="box",
                        help="a mask's embedding: its box's region embedding (default) or the features under it")
    parser.add_argument("--no-png", action="store_true", help="write the JSON only")
    return parser.parse_args(argv)


def read_masks(path: Path):
    """The masks file as an (N, H, W) bool array or an (H, W) label image (checked against the image later)."""
    import json

    import numpy as np
    from PIL import Image

    from fgdense.errors import FGDenseError

    if not path.is_file():
        raise FGDenseError(f"masks file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".json":
            from pycocotools import mask as mask_utils

            data = json.loads(path.read_text(encoding="utf-8"))
            items = data.get("masks", data.get("segments")) if isinstance(data, dict) else data
            rles = [item.get("rle", item) if isinstance(item, dict) else None for item in items or []]
            if not rles or not all(isinstance(r, dict) and "counts" in r and "size" in r for r in rles):
                raise FGDenseError(f"masks file {path} holds no list of COCO RLE masks")
            return np.stack([mask_utils.decode({"size": r["size"], "counts": r["counts"].encode("ascii")
                                                if isinstance(r["counts"], str) else r["counts"]}) for r in rles])
        with Image.open(path) as picture:
            plain = picture if picture.mode in ("P", "L", "I", "I;16") else picture.convert("L")
            return np.asarray(plain).astype(np.int64)
    except FGDenseError:
        raise
    # RecursionError: JSON nested too deeply; DecompressionBombError: a small PNG that decodes huge.
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError,
            Image.DecompressionBombError) as err:
        raise FGDenseError(f"masks file {path} cannot be read as masks: {cli.one_line(err)[:200]}") from None


def check_args(args):
    """Every user mistake, found before the model loads and before anything is written."""
    from fgdense.errors import FGDenseError
    from fgdense.io.files import check_output_folder, check_outputs
    from fgdense.io.fonts import choose_font
    from fgdense.io.inputs import tool_labels
    from fgdense.io.sources import check_image_argument

    labels = tool_labels(args.labels, args.labels_file)
    if args.top_k < 1:
        raise FGDenseError("--top-k must be at least 1")
    budget = cli.max_patches_setting(args.max_patches)
    check_image_argument(args.image)  # before torch and transformers load: decoding the image needs them
    from fgdense.classify_masks import as_masks
    from fgdense.processing.image import load_image

    image = load_image(args.image)
    masks, _ = as_masks(read_masks(Path(args.masks)), (image.height, image.width), f"masks file {args.masks}")
    out = check_output_folder(args.out)
    from fgdense.io.outputs import result_paths

    paths = result_paths(out, Path(args.image).stem, pictures=not args.no_png)
    check_outputs(paths, {"image": args.image, "masks file": args.masks, "labels file": args.labels_file},
                  folders=False)
    font = None if args.no_png else choose_font(labels, args.font)
    return labels, budget, image, masks, paths, font


def work(argv) -> int:
    args = parse_args(argv)
    labels, budget, image, masks, paths, font = check_args(args)
    device = cli.device_of(args.device, args.model)

    from fgdense.classify_masks import MaskClassifier
    from fgdense.io.outputs import header, write_mask_classification

    classifier = MaskClassifier.from_pretrained(args.model, device=device, max_num_patches=budget,
                                                templates=args.templates, top_k=args.top_k, precision=args.precision,
                                                text_mask=args.text_mask, pooling=args.pooling)
    cli.status.start(1, "image")
    result = classifier.classify(image, masks, labels)
    with cli.output_folder(paths["json"].parent):
        write_mask_classification(image, result, paths["json"].parent, Path(args.image).stem,
                                  header(args.image, image, classifier, args.model), font=font,
                                  pictures=not args.no_png)
    cli.status.done = 1
    best = result.best()[2]
    print(f"{len(best)} mask(s) labelled: {', '.join(best[:10])}{' ...' if len(best) > 10 else ''}; "
          f"written to {paths['json']}")
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
