"""Label detector boxes with free-text labels (English or Chinese) by FG-CLIP 2 region embeddings.

    python tools/classify_boxes.py IMAGE --boxes boxes.json --labels cat "杯子|cup" dog [--model CKPT]
        [--out classify_out] [--top-k 5] [--templates] [--max-patches checkpoint] [--no-png] [--font PATH]

boxes.json: a list of [x1, y1, x2, y2] in image pixels (or of {"xyxy": [...]} objects, or the JSON this
tool writes). Writes into --out (default ./classify_out) NAME.json (per box: best label, its probability
softmax(100 * cosine), cosine, top-k) and NAME.png, the labelled boxes (unless --no-png).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder (created; default ./classify_out)",
                        out_default="classify_out", max_patches="checkpoint", font=True)
    parser.add_argument("image", help="image file")
    parser.add_argument("--boxes", required=True, help="JSON file of [x1, y1, x2, y2] pixel boxes")
    parser.add_argument("--labels", nargs="*", default=[], help='labels; "cat|猫" averages synonyms')
    parser.add_argument("--labels-file", help="text file with one label per line (added to --labels)")
    parser.add_argument("--top-k", type=int, default=5, help="labels listed per box (default 5)")
    parser.add_argument("--templates", action="store_true", help="average prompt templates (a photo of a ...)")
    parser.add_argument("--no-png", action="store_true", help="write the JSON only")
    return parser.parse_args(argv)


def work(argv) -> int:
    args = parse_args(argv)
    from fgdense.errors import FGDenseError, LabelError
    from fgdense.io.files import check_output_folder, check_outputs
    from fgdense.io.fonts import choose_font
    from fgdense.io.inputs import read_boxes_file, read_lines_file
    from fgdense.model.boxes import validate_boxes
    from fgdense.processing.image import load_image
    from fgdense.prompts import check_labels

    # Every user mistake is found before the model loads and before anything is written.
    labels = list(args.labels) + (read_lines_file(args.labels_file) if args.labels_file else [])
    if not labels:
        raise LabelError("give at least one label: --labels L1 L2 ... or --labels-file FILE")
    labels = check_labels(labels)
    if args.top_k < 1:
        raise FGDenseError("--top-k must be at least 1")
    image = load_image(args.image)
    boxes = read_boxes_file(args.boxes)
    validate_boxes(boxes, (image.height, image.width))
    budget = cli.max_patches_setting(args.max_patches)
    out = check_output_folder(args.out)
    json_path, png_path = out / f"{Path(args.image).stem}.json", None if args.no_png else out / f"{Path(args.image).stem}.png"
    check_outputs({"JSON output": json_path, "picture": png_path},
                  {"image": args.image, "boxes file": args.boxes, "labels file": args.labels_file}, folders=False)
    font = None if args.no_png else choose_font(labels, args.font)
    device = cli.device_of(args.device)

    from fgdense.classify import BoxClassifier
    from fgdense.io.box_pictures import draw_boxes, score_labels
    from fgdense.io.outputs import write_result

    classifier = BoxClassifier.from_pretrained(args.model, device=device, max_num_patches=budget,
                                               templates=args.templates, top_k=args.top_k,
                                               precision=args.precision, text_mask=args.text_mask)
    result = classifier.classify(image, boxes, labels)
    picture = None
    if png_path:
        found = result.to_detections()
        picture = draw_boxes(image, found, score_labels(found.data["class_name"], found.confidence), font=font)
    payload = {"image": str(args.image), "image_size_hw": [image.height, image.width], "model": args.model,
               **result.to_json()}
    with cli.output_folder(out):
        write_result(json_path, payload, png_path, picture)
    print(f"{len(boxes)} boxes labelled: {json_path}" + (f", {png_path}" if png_path else ""))
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
