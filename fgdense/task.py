"""The one shape every task has (segmentation, box classification, grounding, and any later one).

* ``Task(model, processor=None, tokenizer=None, **settings)``: a model and its ``FGCLIP2Processor``
  (image processor + tokenizer); ``processor`` may also be just an ``FGCLIP2ImageProcessor`` with the
  ``tokenizer`` beside it, and what is not given comes from the model's checkpoint
  (:meth:`fgdense.processing.processor.FGCLIP2Processor.for_model`);
* ``Task.from_pretrained(name_or_path, device=None, dtype=None, **settings)``: all three from a
  checkpoint folder or hub id (``device=None`` means ``"auto"``: CUDA when available, else CPU);
* settings are keyword arguments of the constructor, kept in ``task.settings`` (a frozen dataclass
  whose fields and defaults document them); every job method takes the same names as per-call
  overrides (``segmenter.segment(image, labels, threshold=0.2)``);
* a method per job plus its ``*_batch``; results with ``.to_detections()`` (``supervision.Detections``)
  and ``.to_json()``.

Settings every task shares (:class:`TaskSettings`): ``max_num_patches`` (``None`` = the checkpoint's own
processing, ``"auto"`` = 16384 patches on a GPU / 1024 on a CPU, or a number up to 16384; see
:mod:`fgdense.dense`), ``precision`` (``auto`` = bf16 autocast on CUDA, fp32 elsewhere; ``fp32``,
``bf16``, ``fp16``), ``text_mask`` (``tokenizer`` or ``none``; see :mod:`fgdense.processing.text`),
``templates`` (prompt ensembling for labels), ``batch_size`` (images per backbone pass) and
``max_batch_tokens`` (patches per pass).

Two methods are the only ones that touch the model, so another feature source plugs in by overriding
them: :meth:`Task.image_features` and :meth:`Task.text_encoder`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from .defaults import REGION_MAX_PATCHES
from .dense import DenseFeatures, budget_setting, dense_features_batch, resolve_budget
from .devices import auto_precision, check_precision
from .errors import FGDenseError
from .model import FGCLIP2Model
from .processing.processor import FGCLIP2Processor
from .processing.text import check_text_mask
from .prompts import TextEncoder


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """Settings every task has (see the module docstring)."""

    max_num_patches: int | str | None = REGION_MAX_PATCHES  # fgdense.defaults: one default for library and tools
    precision: str = "auto"
    text_mask: str = "tokenizer"
    templates: bool | tuple[str, ...] = False
    batch_size: int = 8
    max_batch_tokens: int = 16384

    def __post_init__(self):
        budget_setting(self.max_num_patches)
        check_precision(self.precision)
        check_text_mask(self.text_mask)
        if not isinstance(self.templates, bool):
            templates = tuple(self.templates)
            if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
                raise FGDenseError("templates must be True/False or a list of strings each holding '{}'")
            object.__setattr__(self, "templates", templates)
        for name in ("batch_size", "max_batch_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FGDenseError(f"{name} must be a positive whole number, got {value!r}")


class Task:
    """Base of the task classes; see the module docstring for the shape they share."""

    Settings = TaskSettings
    walk = "box"  # the text walk labels are encoded with (recorded with every result)

    def __init__(self, model, processor=None, tokenizer=None, **settings):
        self.model = model
        # A model built in memory has no checkpoint to take a tokenizer from: text work then asks for one.
        self.processor = FGCLIP2Processor.for_model(model, processor, tokenizer)
        self.settings = self._settings(self.Settings, settings)
        self._encoders: dict[tuple, TextEncoder] = {}

    @classmethod
    def from_pretrained(cls, name_or_path, device=None, dtype=None, **settings):
        """Model, image processor and tokenizer of a checkpoint folder or model-hub id."""
        model = FGCLIP2Model.from_pretrained(name_or_path, device="auto" if device is None else device, dtype=dtype)
        return cls(model, FGCLIP2Processor.from_pretrained(name_or_path), **settings)

    @property
    def image_processor(self):
        return self.processor.image_processor

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    # ------------------------------------------------------------------------------ settings
    def _settings(self, base, overrides: dict):
        """``base`` (the Settings class, or a settings object) with ``overrides`` applied and checked."""
        known = [f.name for f in dataclasses.fields(self.Settings)]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise FGDenseError(f"unknown setting(s) {', '.join(unknown)} for {type(self).__name__}; "
                               f"its settings: {', '.join(known)}")
        return base(**overrides) if isinstance(base, type) else dataclasses.replace(base, **overrides)

    def configured(self, **overrides):
        """This task's settings with per-call ``overrides`` applied (checked like the constructor's)."""
        return self._settings(self.settings, overrides) if overrides else self.settings

    def settings_json(self, **overrides) -> dict:
        """The settings a result is made with, as its JSON records them: the device, the precision and the
        patch budget as they resolve there (``max_patches``: a number, or ``"checkpoint"`` for the
        checkpoint's own processing), the weights' dtype, the text walk, then every other setting of the
        task with ``overrides`` applied. Batch sizes are left out: they say how, not what, is computed."""
        settings = self.configured(**overrides)
        device = getattr(self.model, "device", None)
        dtype = getattr(self.model, "dtype", None)
        precision = settings.precision
        if precision == "auto" and device is not None:
            precision = auto_precision(device, dtype)
        cap = resolve_budget(settings.max_num_patches, device or "cpu")
        record = {"device": str(device), "precision": precision, "dtype": str(dtype).replace("torch.", ""),
                  "max_patches": "checkpoint" if cap is None else cap, "walk": self.walk}
        for item in dataclasses.fields(settings):
            if item.name not in ("max_num_patches", "precision", "batch_size", "max_batch_tokens"):
                value = getattr(settings, item.name)
                record[item.name] = list(value) if isinstance(value, tuple) else value
        return record

    # ------------------------------------------------------------------- model-facing steps
    def image_features(self, images: Sequence, settings=None) -> list[DenseFeatures]:
        """Dense features of RGB PIL images, at the settings' patch budget and precision."""
        settings = settings or self.settings
        return dense_features_batch(self.model, images, self.image_processor, settings.max_num_patches,
                                    settings.max_batch_tokens, settings.precision)

    def text_encoder(self, walk_type: str = "box", settings=None) -> TextEncoder:
        """The (cached) encoder of texts for a walk type under the settings' text policy."""
        settings = settings or self.settings
        key = (walk_type, settings.text_mask)
        if key not in self._encoders:
            self._encoders[key] = TextEncoder(self.model, self.tokenizer, walk_type, text_mask=settings.text_mask)
        return self._encoders[key]

    def label_embeddings(self, labels: Sequence[str], settings=None):
        """(K, D) normalised ``box``-walk label embeddings (``cat|猫`` synonyms; templates if set)."""
        settings = settings or self.settings
        return self.text_encoder("box", settings)(labels, settings.templates)

    def __repr__(self) -> str:
        name = getattr(self.model, "name_or_path", type(self.model).__name__)
        return f"{type(self).__name__}({name}, {self.settings})"
