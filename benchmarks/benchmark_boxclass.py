"""Box-classification evaluation speed: fgdense's evaluator vs the per-annotation official protocol.

    python benchmarks/benchmark_boxclass.py [--arch base|tiny] [--images 40] [--boxes 10] [--reference-images 4]
                                            [--device auto] [--workers 4] [--out result.json]

Builds a synthetic COCO-format dataset (JPEG images of COCO-like sizes, about --boxes boxes each, 80
bilingual categories) and a randomly initialised model of the chosen architecture (``base`` = FG-CLIP 2
ViT-B/16's shapes; the text tower uses a small tokenizer, which only affects the one-off category
encoding), then times in the same run:

- fgdense: ``evaluate_box_classification`` (one backbone pass per image, unpadded, workers decoding);
- official, per image: padded ``get_image_region_features`` with all of an image's boxes at once;
- official, per annotation: the image re-processed and re-encoded for every box, as the official
  evaluation script does (on the first --reference-images images only: it is slow).

All three score the boxes against the same category embeddings (the ``boxclass-cn`` protocol: the bare
category names, :func:`fgdense.evaluation.boxclass.category_embeddings`). Prints annotations/s of each
and the agreement of their top-1 predictions.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: fgdense and benchmarks

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.harness import timed  # noqa: E402
from benchmarks.reference import official_region_features_per_box  # noqa: E402
from fgdense import cli  # noqa: E402
from fgdense.errors import OutputError  # noqa: E402
from fgdense.io.files import check_outputs, write_json  # noqa: E402

SIZES = [(480, 640), (640, 480), (427, 640), (375, 500), (640, 427), (512, 512), (333, 500), (480, 360)]
PROTOCOL = "boxclass-cn"  # the bare category names: one prompt per category, as the synthetic names need


def make_dataset(folder: Path, images: int, boxes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    categories = [{"id": 3 * i + 1, "name": f"物体{i}" if i % 2 else f"object {i}"} for i in range(80)]
    entries, annotations = [], []
    for index in range(images):
        h, w = SIZES[index % len(SIZES)]
        pixels = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((w, h), Image.BILINEAR).save(folder / "images" / f"{index:06d}.jpg", quality=90)
        entries.append({"id": index, "file_name": f"{index:06d}.jpg", "height": h, "width": w})
        for _ in range(int(rng.integers(boxes - 2, boxes + 3))):
            bw, bh = rng.uniform(16, w / 2), rng.uniform(16, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            annotations.append({"id": len(annotations), "image_id": index, "bbox": [x, y, bw, bh],
                                "category_id": categories[int(rng.integers(len(categories)))]["id"]})
    ann = folder / "annotations.json"
    ann.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": categories}), encoding="utf-8")
    return ann


@torch.no_grad()
def official(model, processor, tokenizer, dataset, images_dir, per_annotation: bool):
    """Top-1 category per annotation by the official computation, padded: per image (all of its boxes in
    one ``get_image_region_features`` call) or per annotation (the image re-encoded for every box)."""
    from fgdense.evaluation.boxclass import category_embeddings
    from fgdense.evaluation.protocols import protocol_named
    from fgdense.processing.image import decode_as_stored

    ids = [cid for cid, _ in dataset.categories]
    from fgdense.classify import BoxClassifier

    text = category_embeddings(BoxClassifier(model, processor, tokenizer), dataset,
                               protocol_named(PROTOCOL)).to(model.device)
    top1 = {}
    for image in dataset.images:
        pixels = decode_as_stored(images_dir / image.file_name)
        boxes = [a.bbox for a in image.annotations]
        if per_annotation:
            regions = official_region_features_per_box(model, processor, pixels, boxes)
        else:
            inputs = {k: v.to(model.device) for k, v in processor(pixels).items()}
            regions = model.get_image_region_features(**inputs, image_sizes=[pixels.shape[:2]],
                                                      region_infos=[boxes])[0]
        best = (F.normalize(regions.float(), dim=-1) @ text.T).argmax(-1).tolist()
        top1.update({a.annotation_id: ids[b] for a, b in zip(image.annotations, best)})
    return top1


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["base", "tiny"], default="base")
    parser.add_argument("--images", type=int, default=40, help="images timed for fgdense and per-image official")
    parser.add_argument("--boxes", type=int, default=10, help="boxes per image, on average")
    parser.add_argument("--reference-images", type=int, default=4,
                        help="images timed for the per-annotation official protocol (slow)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="fgdense's precision (auto: bf16 autocast on CUDA); the official runs are fp32")
    parser.add_argument("--out", help="write the results as JSON here")
    return parser.parse_args(argv)


def check_args(args):
    """A one-line message for a user mistake, found before anything runs or is written; else None."""
    if args.images < 1 or args.boxes < 3 or not 0 <= args.reference_images <= args.images:
        return "need --images >= 1, --boxes >= 3 and 0 <= --reference-images <= --images"
    try:
        check_outputs({"--out": args.out})
    except OutputError as err:
        return str(err)
    return None


def main(argv=None) -> int:
    from fgdense.config import architecture_config
    from fgdense.evaluation import evaluate_box_classification, load_boxclass_dataset
    from fgdense.model import FGCLIP2Model
    from fgdense.processing import FGCLIP2ImageProcessor
    from fgdense.tiny import build_tokenizer

    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        return cli.fail(problem)
    device = cli.device_of(args.device)

    tokenizer = build_tokenizer()  # a small vocabulary: only the one-off category encoding depends on it
    torch.manual_seed(0)
    model = FGCLIP2Model(architecture_config(args.arch, len(tokenizer))).eval().to(device)
    processor = FGCLIP2ImageProcessor(max_num_patches=256, dynamic_max_patches=True, patch_size=16, resample=2)
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ann = make_dataset(folder, args.images, args.boxes)
        dataset = load_boxclass_dataset(ann)
        images_dir = folder / "images"
        n_all = sum(len(im.annotations) for im in dataset.images)
        from fgdense.classify import BoxClassifier

        classifier = BoxClassifier(model, processor, tokenizer, batch_size=args.batch_size, precision=args.precision)
        common = dict(protocol=PROTOCOL, workers=args.workers, progress=False)
        # Warm-up (kernels, worker start-up paths); not timed.
        evaluate_box_classification(classifier, dataset, images_dir, max_images=1, **common)
        preds = folder / "out" / "predictions.jsonl"
        _, t_fast = timed(lambda: evaluate_box_classification(classifier, dataset, images_dir, out=folder / "out",
                                                              **common), device)
        fast_top1 = {}
        for line in preds.read_text(encoding="utf-8").splitlines()[1:]:
            record = json.loads(line)
            fast_top1[record["annotation_id"]] = record["top5"][0]
        per_image, t_image = timed(lambda: official(model, processor, tokenizer, dataset, images_dir, False), device)

        subset = load_boxclass_dataset(ann)
        subset.images = subset.images[: args.reference_images]
        n_ref = sum(len(im.annotations) for im in subset.images)
        per_ann, t_ann = timed(lambda: official(model, processor, tokenizer, subset, images_dir, True), device)

    def agreement(reference):
        return sum(fast_top1[k] == v for k, v in reference.items()) / max(len(reference), 1)

    result = {
        "arch": args.arch, "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_threads": threads, "precision": args.precision, "workers": args.workers,
        "images": args.images, "annotations": n_all, "reference_images": args.reference_images,
        "reference_annotations": n_ref,
        "fgdense_ann_per_s": n_all / t_fast,
        "official_per_image_ann_per_s": n_all / t_image,
        "official_per_annotation_ann_per_s": n_ref / t_ann if n_ref else None,
        "top1_agreement_with_per_image": agreement(per_image),
        "top1_agreement_with_per_annotation": agreement(per_ann) if n_ref else None,
    }
    ref = result["official_per_annotation_ann_per_s"]
    print(f"{args.arch} on {result['device']} ({threads} threads), {n_all} annotations on {args.images} images:")
    print(f"  fgdense evaluator          {result['fgdense_ann_per_s']:9.2f} ann/s")
    print(f"  official, per image        {result['official_per_image_ann_per_s']:9.2f} ann/s")
    if ref:
        print(f"  official, per annotation   {ref:9.2f} ann/s  ({n_ref} annotations)  "
              f"-> fgdense is {result['fgdense_ann_per_s'] / ref:.1f}x faster")
    print(f"  top-1 agreement: {result['top1_agreement_with_per_image']:.4f} (per image)"
          + (f", {result['top1_agreement_with_per_annotation']:.4f} (per annotation)" if n_ref else ""))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
