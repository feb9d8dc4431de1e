"""Box-classification evaluation (BoxClass-CN, COCO, LVIS) with the protocols of FG-CLIP 2's published numbers.

Per image the checkpoint's default processing (the dynamic patch budget, image alone); per annotated box
(COCO xywh -> xyxy pixels) RoIAlign 1x1 from the dense features; its cosine to every category's text
embedding (made by the dataset's protocol, :mod:`fgdense.evaluation.protocols`) decides top-1 / top-5.

Speed: one backbone pass per image for all of its boxes (the official scripts re-encode the image per
box), category embeddings once, images decoded and processed in DataLoader workers. Scale-out: under
``torchrun`` images are sharded across ranks and the counts all-reduced. With a predictions file
(:mod:`fgdense.evaluation.predictions`) every annotation's outcome is written as it is computed, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ..checkpoint import fingerprint
from ..companions import processor_for, tokenizer_for
from ..dense import DenseFeatures, dense_grids
from ..devices import quiet_worker
from ..errors import BoxError, DatasetError, FGDenseError
from ..model.boxes import validate_boxes
from ..processing.image import decode_as_stored
from ..processing.text import check_text_mask
from ..prompts import TextEncoder
from . import predictions as pred
from .boxclass_data import BoxClassDataset, BoxImage, image_path, load_boxclass_dataset
from .boxclass_report import Tally, build_report, format_report
from .protocols import Protocol, choose_protocol, custom_protocol

TOP_K = 5


class ImageLoader(torch.utils.data.Dataset):
    """Decodes and processes one image per item (in DataLoader workers); failures become skip reasons.

    Images are decoded as stored, without EXIF rotation: dataset boxes refer to the stored pixels, and the
    official evaluation opens images with a plain ``Image.open(...).convert("RGB")``.
    """

    def __init__(self, images: list[BoxImage], images_dir: Path, processor):
        self.images, self.images_dir, self.processor = images, images_dir, processor

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        path = image_path(self.images_dir, image.file_name)
        if path is None:
            return {"image": image, "error": "outside_images", "detail": f"{image.file_name} is outside the images folder"}
        if not path.is_file():
            return {"image": image, "error": "missing_image", "detail": f"{path} does not exist"}
        try:
            pixels = decode_as_stored(path)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            return {"image": image, "error": "unreadable_image", "detail": str(err)}
        inputs = self.processor(pixels)  # the checkpoint's default: this image's own dynamic budget
        h, w = (int(v) for v in inputs["spatial_shapes"][0])
        # Only the real patch rows travel back; padding is never looked at (see dense_grids).
        return {"image": image, "size": pixels.shape[:2], "pixel_values": inputs["pixel_values"][0, : h * w],
                "spatial_shape": inputs["spatial_shapes"][0]}


def _collate(items):
    return items


def category_embeddings(model, tokenizer, dataset: BoxClassDataset, protocol: Protocol, text_mask: str,
                        progress: bool = False) -> torch.Tensor:
    """(K, D) normalised text embeddings of the dataset's categories by ``protocol``."""
    encoder = TextEncoder(model, tokenizer, "box", lowercase=protocol.lowercase, text_mask=text_mask, cache=False)
    return encoder.group_embeddings([protocol.prompts(name) for _, name in dataset.categories], progress=progress)


def score_batch(model, items, text, category_ids, max_batch_tokens, precision) -> list[list[dict]]:
    """Prediction records of each image of a DataLoader batch: one backbone pass per image."""
    ok = [item for item in items if "error" not in item]
    grids = []
    if ok:
        width = max(item["pixel_values"].shape[0] for item in ok)
        values = torch.stack([F.pad(item["pixel_values"], (0, 0, 0, width - item["pixel_values"].shape[0])) for item in ok])
        shapes = torch.stack([item["spatial_shape"] for item in ok])
        grids = dense_grids(model, values, shapes, max_batch_tokens, precision)
    grid_of = {id(item): grid for item, grid in zip(ok, grids)}
    k = min(TOP_K, text.shape[0])
    results = []
    for item in items:
        image = item["image"]
        base = [{"image_id": image.image_id, "annotation_id": a.annotation_id, "category_id": a.category_id}
                for a in image.annotations]
        if "error" in item:
            results.append([dict(b, skipped=item["error"], detail=item["detail"]) for b in base])
            continue
        size = tuple(int(v) for v in item["size"])
        records, valid, boxes = [None] * len(base), [], []
        for i, ann in enumerate(image.annotations):
            try:
                validate_boxes([ann.bbox], size)
                valid.append(i)
                boxes.append(ann.bbox)
            except BoxError as err:
                records[i] = dict(base[i], skipped="degenerate_box", detail=str(err))
        if boxes:
            regions = DenseFeatures(grid_of[id(item)], size).region_embeddings(boxes)
            sims = F.normalize(regions.to(text.device), dim=-1) @ text.T
            scores, top = sims.topk(k, dim=-1)
            for row, i in enumerate(valid):
                ids = [category_ids[j] for j in top[row].tolist()]
                records[i] = dict(base[i], bbox=[round(v, 2) for v in image.annotations[i].bbox], top5=ids,
                                  scores=[round(s, 6) for s in scores[row].tolist()])
        results.append(records)
    return results


def _dist():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier():
    if _dist()[1] > 1:
        torch.distributed.barrier()


def _protocol(protocol: str | Protocol, prompts, dataset) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if prompts is not None:
        if protocol != "auto":
            raise FGDenseError("give either a protocol or a prompts file, not both")
        return custom_protocol(prompts)
    return choose_protocol(protocol, dataset)


def evaluate_box_classification(model, annotations, images_dir, processor=None, tokenizer=None, *,
                                protocol: str | Protocol = "auto", prompts=None, text_mask: str = "tokenizer",
                                batch_size: int = 8, workers: int = 0, predictions=None, resume: bool = False,
                                max_images: int | None = None, precision: str = "fp32",
                                max_batch_tokens: int = 16384, progress: bool = True, status=None) -> dict:
    """Box-classification accuracy of ``model`` on a COCO-format annotation file; returns the report.

    ``annotations`` is a path (or a :class:`BoxClassDataset`); image files are looked up under
    ``images_dir`` (names leading outside it are skipped and counted). ``processor`` / ``tokenizer``
    default to the model's checkpoint's: the default processor (dynamic patch budget) is the protocol of
    the published numbers. ``protocol``: ``auto``, ``boxclass-cn``, ``coco`` or ``lvis``; ``prompts``: a
    file of one's own templates instead. ``batch_size`` images are decoded per DataLoader batch by
    ``workers`` background processes. ``predictions`` (a .jsonl path) receives one line per annotation;
    with ``resume`` the images already in it are skipped and their outcomes counted from it.
    ``max_images`` stops after that many (more) images: the report then says ``complete: false``.
    ``precision`` defaults to fp32 (``bf16`` on a GPU is faster, within rounding). Under
    ``torch.distributed`` every rank must call this; images are sharded and the counts summed, and every
    rank returns the same report. Accuracies are fractions in [0, 1]. ``status`` (a
    :class:`fgdense.cli.Status`) counts this rank's finished images, for the line an interruption prints.
    """
    dataset = annotations if isinstance(annotations, BoxClassDataset) else load_boxclass_dataset(annotations)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(f"images folder {images_dir} does not exist")
    if resume and predictions is None:
        raise FGDenseError("resume needs the predictions file of the interrupted run")
    if batch_size < 1 or workers < 0 or (max_images is not None and max_images < 0):
        raise FGDenseError("batch_size must be >= 1, workers >= 0 and max_images >= 0")
    check_text_mask(text_mask)
    chosen = _protocol(protocol, prompts, dataset)
    processor = processor_for(model, processor)
    tokenizer = tokenizer_for(model, tokenizer)
    rank, world = _dist()
    folder = getattr(model, "checkpoint_folder", None)
    header = {"annotations": str(Path(dataset.source).resolve()) if dataset.source else "",
              "model": fingerprint(folder) if folder else "", "protocol": chosen.name, "text_mask": text_mask,
              "precision": precision}

    # Outcomes already on disk (resume); rank 0 folds stray part files into the main file first.
    done: dict[int, list[dict]] = {}
    if predictions is not None:
        predictions = Path(predictions)
        if not predictions.parent.is_dir():
            raise DatasetError(f"folder of the predictions file {predictions} does not exist")
        # Every rank checks and reads (so a file that does not match stops every rank, not just one) ...
        pred.check_predictions_file(predictions, header, resume)
        if resume:
            done = pred.read_done([predictions, *pred.part_paths(predictions)], dataset, header)
        _barrier()
        if rank == 0:  # ... then one rank folds the part files of the interrupted run into the main file.
            # Without resume the file starts over at once (header only, part files of an earlier run
            # gone), so a later --resume after an interruption cannot pick up an older run's lines.
            pred.rewrite(predictions, header, done)
        _barrier()

    tally = Tally(dataset.categories)
    if rank == 0:
        for index in sorted(done):
            tally.add_image(done[index])
    remaining = [image for image in dataset.images if image.index not in done]
    if max_images is not None:
        remaining = remaining[:max_images]
    mine = remaining[rank::world]
    if status is not None:
        status.start(len(mine), "image", status.note)

    device = model.device
    text = category_embeddings(model, tokenizer, dataset, chosen, text_mask, progress and rank == 0).to(device)
    category_ids = [cid for cid, _ in dataset.categories]
    loader = torch.utils.data.DataLoader(ImageLoader(mine, images_dir, processor), batch_size=batch_size,
                                         num_workers=workers, collate_fn=_collate, worker_init_fn=quiet_worker)
    part = open(pred.part_path(predictions, rank), "w", encoding="utf-8") if predictions is not None else None
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        desc = "box classification" + (f" (rank 0 of {world})" if world > 1 else "")
        bar = tqdm(total=len(mine), desc=desc, unit="img")
    try:
        if part is not None:
            part.write(pred.dump({pred.HEADER_KEY: header}))
        for items in loader:
            for records in score_batch(model, items, text, category_ids, max_batch_tokens, precision):
                tally.add_image(records)
                if part is not None:
                    # An image's lines are written together and flushed every batch; an image cut off
                    # by a stop is incomplete in the file and evaluated again on resume.
                    part.write("".join(pred.dump(r) for r in records))
            if part is not None:
                part.flush()
            if status is not None:
                status.done += len(items)
            if bar is not None:
                bar.update(len(items))
                bar.set_postfix(tally.running())
    finally:
        if bar is not None:
            bar.close()
        if part is not None:
            part.close()

    tally.all_reduce(device if torch.distributed.is_initialized() and
                     torch.distributed.get_backend() == "nccl" else "cpu")
    if predictions is not None:
        _barrier()
        if rank == 0:
            # The resumed outcomes plus this run's; without resume an older file's content is replaced.
            everything = {**done, **pred.read_done(pred.part_paths(predictions), dataset, header)}
            pred.rewrite(predictions, header, everything)
        _barrier()
    meta = {"annotations_file": dataset.source, "images_dir": str(images_dir),
            "model": str(getattr(model, "name_or_path", "")), "model_fingerprint": header["model"],
            "protocol": chosen.name, "protocol_description": chosen.describe(), "text_mask": text_mask,
            "precision": precision}
    return build_report(dataset, tally, meta)


__all__ = ["evaluate_box_classification", "format_report", "load_boxclass_dataset", "category_embeddings",
           "score_batch", "ImageLoader"]
