"""Find the regions that phrases describe (English or Chinese), among given boxes or from scratch.

    python tools/ground.py IMAGE --phrases "the red mug on the left" "一只猫" [--model CKPT] [--out ground_out]
        [--boxes boxes.json] [--max-proposals 5] [--proposal-threshold otsu] [--max-patches checkpoint] [--no-png]

With --boxes (a JSON list of [x1, y1, x2, y2] pixel boxes): every phrase is scored against every box
and its best box reported. Without: boxes are proposed from each phrase's heatmap over FG-CLIP 2's dense
features (thresholded connected regions, ranked by region-embedding score). Phrases of up to 64 tokens
use the box walk, longer ones the long walk. Writes into --out (default ./ground_out) NAME.json and
NAME.png, each phrase's best box (unless --no-png).
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fgdense import cli  # noqa: E402

CAPTION_CHARS = 40  # long phrases are shortened on the picture (the JSON has them whole)


def parse_args(argv):
    parser = cli.parser(__doc__.splitlines()[0], out_help="output folder (created; default ./ground_out)",
                        out_default="ground_out", max_patches="checkpoint", font=True)
    parser.add_argument("image", help="image file")
    parser.add_argument("--phrases", nargs="+", required=True, help="phrases to ground")
    parser.add_argument("--boxes", help="JSON file of candidate [x1, y1, x2, y2] pixel boxes (default: propose boxes)")
    parser.add_argument("--proposal-threshold", default="otsu",
                        help="proposals: 'otsu' (default: Otsu's threshold of each heatmap) or a level from the "
                             "heatmap's min (0) to its max (1) that a region must reach")
    parser.add_argument("--max-proposals", type=int, default=5, help="proposals kept per phrase (default 5)")
    parser.add_argument("--no-png", action="store_true", help="write the JSON only")
    return parser.parse_args(argv)


def _short(text: str) -> str:
    return text if len(text) <= CAPTION_CHARS else text[: CAPTION_CHARS - 1] + "…"


def work(argv) -> int:
    args = parse_args(argv)
    from fgdense.ground import Grounder
    from fgdense.io.files import check_output_folder, check_outputs
    from fgdense.io.fonts import choose_font
    from fgdense.io.inputs import read_boxes_file
    from fgdense.model.boxes import validate_boxes
    from fgdense.processing.image import load_image
    from fgdense.prompts import check_phrases

    # Every user mistake is found before the model loads and before anything is written.
    phrases = check_phrases(args.phrases)
    settings = Grounder.Settings(proposal_threshold=args.proposal_threshold, max_proposals=args.max_proposals,
                                 max_num_patches=cli.max_patches_setting(args.max_patches),
                                 precision=args.precision, text_mask=args.text_mask)
    image = load_image(args.image)
    boxes = None
    if args.boxes:
        boxes = read_boxes_file(args.boxes)
        validate_boxes(boxes, (image.height, image.width))
    out = check_output_folder(args.out)
    stem = Path(args.image).stem
    json_path, png_path = out / f"{stem}.json", None if args.no_png else out / f"{stem}.png"
    check_outputs({"JSON output": json_path, "picture": png_path}, {"image": args.image, "boxes file": args.boxes},
                  folders=False)
    font = None if args.no_png else choose_font([_short(p) for p in phrases], args.font)
    device = cli.device_of(args.device)

    from fgdense.io.box_pictures import draw_boxes, score_labels
    from fgdense.io.outputs import write_result

    grounder = Grounder.from_pretrained(args.model, device=device, **dataclasses.asdict(settings))
    result = grounder.ground(image, phrases, boxes)
    picture = None
    if png_path:
        found = result.to_detections()
        names = [_short(name) for name in found.data["class_name"]]
        picture = draw_boxes(image, found, score_labels(names, found.confidence), font=font)
    payload = {"image": str(args.image), "image_size_hw": [image.height, image.width], "model": args.model,
               "mode": "candidate boxes" if boxes is not None else "proposals", **result.to_json()}
    with cli.output_folder(out):
        write_result(json_path, payload, png_path, picture)
    print(f"{len(phrases)} phrases grounded: {json_path}" + (f", {png_path}" if png_path else ""))
    return 0


def main(argv=None) -> int:
    """The tool as a function: the exit code, never an exception (one line for errors and Ctrl-C)."""
    return cli.run(work, argv)


if __name__ == "__main__":
    sys.exit(main())
