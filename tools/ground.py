"""Find the regions that phrases describe (English or Chinese), among given boxes or from scratch.

    python tools/ground.py IMAGE --phrases "the red mug on the left" "一只猫" --model CKPT \
        --output grounding.json [--boxes boxes.json] [--png grounding.png] [--max-proposals 5]

With --boxes (a JSON list of [x1, y1, x2, y2] pixel boxes): every phrase is scored against every box
and its best box reported. Without: boxes are proposed from each phrase's heatmap over FG-CLIP 2's dense
features (thresholded connected regions, ranked by region-embedding score). Phrases of up to 64 tokens
use the box walk, longer ones the long walk. Writes the JSON result and a picture of each phrase's best box.
"""

import argparse
import sys

from fgdense.cli import fail, output_paths, pick_device
from fgdense.errors import FGDenseError
from fgdense.model.boxes import validate_boxes
from fgdense.processing import check_texts, load_image
from fgdense.regions import Grounder, read_boxes_file
from fgdense.viz_boxes import draw_boxes, score_labels, write_outputs

CAPTION_CHARS = 40  # long phrases are shortened on the picture (the JSON has them whole)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="image file")
    parser.add_argument("--phrases", nargs="+", required=True, help="phrases to ground")
    parser.add_argument("--boxes", help="JSON file of candidate [x1, y1, x2, y2] pixel boxes (default: propose boxes)")
    parser.add_argument("--model", required=True, help="checkpoint folder or model-hub id")
    parser.add_argument("--output", required=True, help="JSON result to write")
    parser.add_argument("--png", help="annotated picture to write (default: --output with .png)")
    parser.add_argument("--no-png", action="store_true", help="write the JSON only")
    parser.add_argument("--threshold", default="otsu",
                        help="proposals: 'otsu' (default: Otsu's threshold of each heatmap) or a level from the "
                             "heatmap's min (0) to its max (1) that a region must reach")
    parser.add_argument("--max-proposals", type=int, default=5, help="proposals kept per phrase (default 5)")
    parser.add_argument("--max-num-patches", type=int,
                        help="patch budget (default: the checkpoint's own processing); more patches, finer heatmaps")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--font", help="font file for the labels (default: an installed font that can draw them)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    _, png, problem = output_paths(args.output, args.png, args.no_png)
    if problem:
        return fail(problem)
    threshold = args.threshold
    if threshold != "otsu":
        try:
            threshold = float(threshold)
        except ValueError:
            threshold = -1.0
    if args.max_proposals < 1 or not (threshold == "otsu" or 0.0 <= threshold <= 1.0):
        return fail("--max-proposals must be at least 1 and --threshold 'otsu' or a number from 0 to 1")
    try:
        # Every user mistake is found before the model loads and before anything is written.
        phrases = check_texts(args.phrases, "phrase")
        for index, phrase in enumerate(phrases):
            if not phrase.strip():
                raise ValueError(f"phrase {index} is blank")
        image = load_image(args.image)
        boxes = None
        if args.boxes:
            boxes = read_boxes_file(args.boxes)
            validate_boxes(boxes, (image.height, image.width))
        grounder = Grounder.from_pretrained(args.model, device=pick_device(args.device),
                                            max_num_patches=args.max_num_patches)
        result = grounder.ground(image, phrases, boxes, threshold=threshold, max_proposals=args.max_proposals)
        picture = None
        if png:
            found = result.detections
            names = [_short(name) for name in found.data["class_name"]]
            picture = draw_boxes(image, found, score_labels(names, found.confidence), font=args.font)
        payload = {"image": str(args.image), "image_size_hw": [image.height, image.width],
                   "mode": "candidate boxes" if boxes is not None else "proposals", **result.to_json()}
        write_outputs(args.output, payload, png, picture)
    except (FGDenseError, ValueError, OSError) as err:
        return fail(str(err))
    print(f"{len(phrases)} phrases grounded: {args.output}" + (f", {png}" if png else ""))
    return 0


def _short(text: str) -> str:
    return text if len(text) <= CAPTION_CHARS else text[: CAPTION_CHARS - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
