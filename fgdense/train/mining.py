"""Which categories the starting model confuses: for choosing hard negatives of COCO-format data."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm


@torch.no_grad()
def confusion_ranking(checkpoint, dataset, max_images: int = 256, batch_size: int = 16, device=None,
                      progress: bool = True) -> dict:
    """Category id -> the other category ids, most confused with it first.

    The starting model classifies the boxes of up to ``max_images`` training images (a fixed random
    sample) by their region embeddings against every category name (``box`` walk, English names, by
    the text policy of the evaluation: :func:`fgdense.prompts.encode_text`), and for each true category
    sums the softmax probability (temperature 100, as box classification reports) that goes to every other category. Categories
    without a sampled box, and ties, are ranked by how close the model finds the names themselves.
    """
    from ..model.modeling import FGCLIP2Model
    from ..processing.processor import FGCLIP2Processor
    from ..prompts import encode_text

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = FGCLIP2Model.from_pretrained(checkpoint, device=device).eval()
    companions = FGCLIP2Processor.from_pretrained(checkpoint)
    processor = companions.image_processor
    ids = dataset.category_ids
    index = {c: i for i, c in enumerate(ids)}
    names = [dataset.categories[c].name for c in ids]
    text = encode_text(model, companions.tokenizer, names, "box")
    mass = torch.zeros(len(ids), len(ids), dtype=torch.float64)
    rng = np.random.default_rng(0)
    sample = rng.permutation(len(dataset.images))[:max_images]
    for start in tqdm(range(0, len(sample), batch_size), desc="confusions of the starting model",
                      disable=not progress, leave=False):
        images = [dataset.images[i] for i in sample[start:start + batch_size]]
        pixels = [_load(im.path) for im in images]
        kept = [(im, px) for im, px in zip(images, pixels) if px is not None]
        if not kept:
            continue
        inputs = processor([px for _, px in kept])
        inputs = {k: v.to(device) for k, v in inputs.items()}
        sizes = [(im.height, im.width) for im, _ in kept]
        boxes = [im.boxes * np.array([im.width, im.height, im.width, im.height], dtype=np.float32) for im, _ in kept]
        regions = model.get_image_region_features(**inputs, image_sizes=sizes, region_infos=boxes)
        for (im, _), region in zip(kept, regions):
            probs = torch.softmax(100 * F.normalize(region.float(), dim=-1) @ text.t(), dim=-1).double().cpu()
            for cat, row in zip(im.categories, probs):
                mass[index[cat]] += row
    similarity = (text @ text.t()).double().cpu()
    ranking = {}
    for i, cat in enumerate(ids):
        score = mass[i] + 1e-6 * similarity[i]  # names' closeness breaks ties and ranks unseen categories
        score[i] = float("-inf")
        ranking[cat] = [ids[j] for j in torch.argsort(score, descending=True).tolist() if j != i]
    return ranking


def _load(path):
    from ..errors import ImageLoadError
    from ..processing.image import decode_as_stored

    try:
        return decode_as_stored(path)
    except ImageLoadError:
        return None
