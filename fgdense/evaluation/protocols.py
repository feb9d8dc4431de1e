"""The official box-classification protocols as named presets: how category names become text embeddings.

Each FG-CLIP 2 evaluation script turns category names into prompts its own way:

* ``boxclass-cn`` (``eval/in1k/laion_cn_box_cls_ddp.py``): the bare category name, **not** lower-cased
  (``T恤``, ``iPhone`` keep their case), one embedding per category;
* ``coco`` (``eval/coco_box_ddp.py``): the name put into each of CLIP's 80 ImageNet templates
  (``a bad photo of a {}.`` ...), lower-cased; the 80 normalised embeddings averaged and normalised again;
* ``lvis`` (``eval/in1k/lvis_box_cls_ddp.py``): as ``coco``, after LVIS's ``_`` become spaces;

all with the ``box`` walk, 64 tokens, and the text policy's attention mask. ``auto`` picks ``lvis`` for
LVIS files, ``boxclass-cn`` when the category names are Chinese, ``coco`` otherwise. A user's own
templates (one per line, ``{}`` for the name) make a ``custom`` protocol: lower-cased, ensembled as ``coco``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from ..prompts import imagenet_templates, is_chinese

PROTOCOLS = ("auto", "boxclass-cn", "coco", "lvis")


@dataclass(frozen=True)
class Protocol:
    """How category names become prompts: ``templates`` (None: the bare name), ``lowercase``, and whether
    LVIS's ``_`` become spaces first."""

    name: str
    templates: tuple[str, ...] | None
    lowercase: bool
    underscores_to_spaces: bool = False

    def prompts(self, category_name: str) -> list[str]:
        """The prompts whose (normalised, averaged) embeddings stand for one category."""
        name = category_name.replace("_", " ") if self.underscores_to_spaces else category_name
        if self.templates is None:
            return [name]
        return [template.format(name) for template in self.templates]

    def describe(self) -> str:
        ensemble = "bare category name" if self.templates is None else f"{len(self.templates)} templates averaged"
        case = "lower-cased" if self.lowercase else "case kept"
        return f"{self.name}: {ensemble}, {case}, box walk; RoIAlign 1x1 at the checkpoint's processing; cosine top-k"


def protocol_named(name: str) -> Protocol:
    if name == "boxclass-cn":
        return Protocol("boxclass-cn", None, lowercase=False)
    if name == "coco":
        return Protocol("coco", imagenet_templates(), lowercase=True)
    if name == "lvis":
        return Protocol("lvis", imagenet_templates(), lowercase=True, underscores_to_spaces=True)
    raise DatasetError(f"unknown protocol {name!r}; use one of {', '.join(PROTOCOLS)}")


def custom_protocol(templates_file) -> Protocol:
    """A protocol of one's own templates: a UTF-8 file, one template per line, each holding ``{}``."""
    path = Path(templates_file)
    if not path.is_file():
        raise DatasetError(f"prompts file {path} does not exist")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DatasetError(f"prompts file {path} is not UTF-8 text") from None
    if not lines:
        raise DatasetError(f"prompts file {path} holds no templates")
    for number, line in enumerate(lines, 1):
        if line.count("{}") != 1 or line.replace("{}", "").count("{") or line.replace("{}", "").count("}"):
            raise DatasetError(f"prompts file {path}: template {number} {line!r} must hold '{{}}' exactly once "
                               "(where the category name goes) and no other braces")
    return Protocol(f"custom ({path.name})", tuple(lines), lowercase=True)


def choose_protocol(name: str, dataset) -> Protocol:
    """The protocol ``name`` stands for on ``dataset`` (``auto``: by what the file looks like)."""
    if name != "auto":
        return protocol_named(name)
    if dataset.is_lvis:
        return protocol_named("lvis")
    names = [category_name for _, category_name in dataset.categories]
    if sum(is_chinese(n) for n in names) * 2 > len(names):
        return protocol_named("boxclass-cn")
    return protocol_named("coco")


__all__ = ["PROTOCOLS", "Protocol", "choose_protocol", "custom_protocol", "imagenet_templates", "protocol_named"]
