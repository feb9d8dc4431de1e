"""Hard-negative mining: which categories the starting model confuses, ranked the right way round."""

from types import SimpleNamespace

import numpy as np
import torch

from fgdense.train import mining

BASIS = torch.eye(4)


class PlantedModel:
    """Region embeddings planted per box: each box's region is the direction the test gives it."""

    def __init__(self, regions):
        self.regions = regions  # per image, (boxes, D)

    def eval(self):
        return self

    def get_image_region_features(self, image_sizes, region_infos, **inputs):
        return [self.regions[i] for i in range(len(region_infos))]


def test_each_category_ranks_the_ones_its_boxes_are_mistaken_for_first(monkeypatch):
    """Boxes of A look like B and boxes of B look like C (C's look like C): A's hardest negative is B and
    B's is C. Read the other way round (who is mistaken for A), B would rank A first."""
    ids = [10, 20, 30]
    names = {10: "ant", 20: "bee", 30: "cow"}
    image = SimpleNamespace(path="planted.png", width=40, height=30, boxes=np.array([[0, 0, 0.5, 0.5]] * 3),
                            categories=[10, 20, 30])
    dataset = SimpleNamespace(category_ids=ids, categories={c: SimpleNamespace(name=n) for c, n in names.items()},
                              images=[image])
    # Box of ant -> mostly bee; box of bee -> mostly cow; box of cow -> cow.
    regions = torch.stack([BASIS[1] + 0.2 * BASIS[0], BASIS[2] + 0.2 * BASIS[1], BASIS[2]])
    model = PlantedModel([regions])
    monkeypatch.setattr("fgdense.model.modeling.FGCLIP2Model.from_pretrained", lambda *a, **k: model)
    monkeypatch.setattr("fgdense.processing.processor.FGCLIP2Processor.from_pretrained",
                        lambda *a, **k: SimpleNamespace(image_processor=lambda pixels: {}, tokenizer=None))
    monkeypatch.setattr("fgdense.prompts.encode_text", lambda model, tokenizer, texts, walk: BASIS[[0, 1, 2]])
    monkeypatch.setattr(mining, "_load", lambda path: np.zeros((30, 40, 3), np.uint8))
    ranking = mining.confusion_ranking("planted", dataset, device="cpu", progress=False)
    assert ranking[10] == [20, 30]
    assert ranking[20] == [30, 10]
    assert ranking[30][0] in (10, 20) and len(ranking[30]) == 2
