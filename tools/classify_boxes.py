"""Label detector boxes with free-text labels (English or Chinese) by FG-CLIP 2 region embeddings.

    python tools/classify_boxes.py IMAGE --boxes boxes.json --labels cat "杯子|cup" dog --model CKPT \
        --output result.json [--png result.png] [--top-k 5] [--templates] [--max-num-patches N]

boxes.json: a list of [x1, y1, x2, y2] in image pixels (or of {"xyxy": [...]} objects). Writes the
JSON result (per box: best label, its probability softmax(100 * cosine), cosine, top-k) and a picture
of the labelled boxes (next to the JSON unless --png / --no-png say otherwise).
"""

import argparse
import sys
from pathlib import Path

from fgdense.cli import fail, output_paths, pick_device
from fgdense.errors import FGDenseError
from fgdense.model.boxes import validate_boxes
from fgdense.processing import load_image
from fgdense.prompts import check_labels
from fgdense.regions import BoxClassifier, read_boxes_file
from fgdense.viz_boxes import draw_boxes, score_labels, write_outputs


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="image file")
    parser.add_argument("--boxes", required=True, help="JSON file of [x1, y1, x2, y2] pixel boxes")
    parser.add_argument("--labels", nargs="+", default=[], help='labels; "cat|猫" averages synonyms')
    parser.add_argument("--labels-file", help="text file with one label per line (added to --labels)")
    parser.add_argument("--model", required=True, help="checkpoint folder or model-hub id")
    parser.add_argument("--output", required=True, help="JSON result to write")
    parser.add_argument("--png", help="annotated picture to write (default: --output with .png)")
    parser.add_argument("--no-png", action="store_true", help="write the JSON only")
    parser.add_argument("--top-k", type=int, default=5, help="labels listed per box (default 5)")
    parser.add_argument("--templates", action="store_true", help="average prompt templates (a photo of a ...)")
    parser.add_argument("--max-num-patches", type=int,
                        help="patch budget per image (default: the checkpoint's own processing, "
                             "as the official evaluation)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--font", help="font file for the labels (default: an installed font that can draw them)")
    return parser.parse_args(argv)


def read_labels(args) -> list[str]:
    labels = list(args.labels)
    if args.labels_file:
        path = Path(args.labels_file)
        if not path.is_file():
            raise ValueError(f"labels file {path} does not exist")
        labels += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return check_labels(labels)


def main(argv=None) -> int:
    args = parse_args(argv)
    _, png, problem = output_paths(args.output, args.png, args.no_png)
    if problem:
        return fail(problem)
    if args.top_k < 1:
        return fail("--top-k must be at least 1")
    try:
        # Every user mistake is found before the model loads and before anything is written.
        labels = read_labels(args)
        image = load_image(args.image)
        boxes = read_boxes_file(args.boxes)
        validate_boxes(boxes, (image.height, image.width))
        classifier = BoxClassifier.from_pretrained(args.model, device=pick_device(args.device),
                                                   max_num_patches=args.max_num_patches, templates=args.templates)
        result = classifier.classify(image, boxes, labels, top_k=args.top_k)
        picture = None
        if png:
            captions = score_labels(result.detections.data["class_name"], result.detections.confidence)
            picture = draw_boxes(image, result.detections, captions, font=args.font)
        payload = {"image": str(args.image), "image_size_hw": [image.height, image.width], **result.to_json()}
        write_outputs(args.output, payload, png, picture)
    except (FGDenseError, ValueError, OSError) as err:
        return fail(str(err))
    print(f"{len(boxes)} boxes labelled: {args.output}" + (f", {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
