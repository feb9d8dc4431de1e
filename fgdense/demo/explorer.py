"""The Dense explorer tab: what the model's dense features see, at a patch budget picked in the page.

A mixin of :class:`~fgdense.demo.engine.DemoEngine` (its model, segmenter, cache, uploads and files):
a clicked patch's similarity to every patch, and texts' heatmaps over the features.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..config import MAX_PATCHES
from ..errors import FGDenseError
from ..io.files import write_all, write_picture
from ..io.segment_pictures import score_maps_grid
from .answers import ExploreAnswer, glyph_note, score_text, text_table
from .fields import split_labels
from .uploads import file_stem, need_image

BUDGET_CHOICES = (256, 576, 1024, 2304, 4096, 9216, MAX_PATCHES)
CPU_BUDGET_LIMIT = 4096  # 16384 patches is minutes per image for a released model on a CPU


def _quiet(fraction: float, text: str) -> None:
    pass


class DenseExplorer:
    """The explorer's jobs (see the module docstring)."""

    @property
    def budget_choices(self) -> list[int]:
        """Budgets the explorer offers: up to 16384 on a GPU, up to 4096 on a CPU."""
        top = MAX_PATCHES if self.device.type == "cuda" else CPU_BUDGET_LIMIT
        return sorted({b for b in BUDGET_CHOICES if b <= top} | ({self.budget} if self.budget else set()))

    def point_similarity(self, path, x: float, y: float, budget: int | None = None, progress=_quiet) -> ExploreAnswer:
        """Cosine similarity of the patch under image pixel (x, y) to every patch: which parts of the image
        the model sees as alike (FG-CLIP 2's dense-feature display)."""
        budget = self._explorer_budget(budget)
        with self._job():
            image, _, before = self._start(path, [], self.segmenter, progress, budget)
            if not (0 <= float(x) < image.width and 0 <= float(y) < image.height):
                raise FGDenseError(f"the point ({x}, {y}) is outside the {image.width}x{image.height} image")
            feats = self._explorer_features(image, budget)
            cell_h, cell_w = feats.cell_size
            row = min(int(float(y) // cell_h), feats.grid_size[0] - 1)
            col = min(int(float(x) // cell_w), feats.grid_size[1] - 1)
            grid = feats.normalized()
            scores = feats.upsample((grid @ grid[row, col])[None]).cpu().numpy().astype(np.float32)
            name = f"patch row {row + 1}, column {col + 1}"
            progress(0.8, "drawing the picture")
            picture = score_maps_grid(marked(image, float(x), float(y)), [name], scores,
                                      panel=max(320, min(640, max(image.size))))
            out = self.files.run_folder("point") / f"{file_stem(path)}_point.png"
            write_all([(out, write_picture(picture))])
        h, w = feats.grid_size
        message = (f"similarity of {name} (at {float(x):.0f}, {float(y):.0f}) to every patch of the {h}x{w} grid "
                   f"({h * w} patches); {self._reuse_text(before)}")
        return ExploreAnswer(out, [[name, score_text(scores.min()), score_text(scores.max())]], message)

    def text_heatmaps(self, path, texts: str, budget: int | None = None, progress=_quiet) -> ExploreAnswer:
        """Each text's cosine heatmap over the dense features at ``budget`` patches."""
        need_image(path)  # the first thing to say when nothing is uploaded yet
        texts = split_labels(texts, "text")
        budget = self._explorer_budget(budget)
        with self._job():
            image, lettering, before = self._start(path, texts, self.segmenter, progress, budget)
            feats = self._explorer_features(image, budget)
            settings = self.segmenter.configured(max_num_patches=budget)
            grid_maps = feats.similarity(self.segmenter.label_embeddings(texts, settings))
            scores = feats.upsample(grid_maps).cpu().numpy().astype(np.float32)
            progress(0.8, "drawing the pictures")
            picture = score_maps_grid(image, texts, scores, font=lettering)
            out = self.files.run_folder("text") / f"{file_stem(path)}_text.png"
            write_all([(out, write_picture(picture))])
        h, w = feats.grid_size
        message = (f"{len(texts)} text(s) over the {h}x{w} grid ({h * w} patches, budget {budget}); "
                   f"{self._reuse_text(before)}{glyph_note(lettering)}")
        return ExploreAnswer(out, text_table(texts, grid_maps.cpu().numpy()), message)

    def _explorer_budget(self, budget) -> int:
        if budget in (None, ""):
            return self.budget or 1024
        try:
            budget = int(budget)
        except (TypeError, ValueError):
            raise FGDenseError(f"the patch budget must be one of {self.budget_choices}, got {budget!r}") from None
        if budget not in self.budget_choices:
            raise FGDenseError(f"the patch budget must be one of {self.budget_choices}, got {budget}")
        return budget

    def _explorer_features(self, image, budget: int):
        # Through the segmenter, so the explorer shares the cache (and an entry at the Segment tab's budget).
        return self.segmenter.image_features([image], self.segmenter.configured(max_num_patches=budget))[0]


def marked(image: Image.Image, x: float, y: float) -> Image.Image:
    """The image with a ring at (x, y), drawn in black and white so it shows on any colour."""
    copy = image.copy()
    draw = ImageDraw.Draw(copy)
    radius = max(5, round(min(image.size) / 40))
    width = max(2, radius // 3)
    draw.ellipse([x - radius - width, y - radius - width, x + radius + width, y + radius + width], outline=(0, 0, 0),
                 width=width)
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=(255, 255, 255), width=width)
    return copy


__all__ = ["BUDGET_CHOICES", "CPU_BUDGET_LIMIT", "DenseExplorer", "marked"]
