"""Evaluation: box classification (BoxClass-CN, COCO, LVIS; the official protocols), segmentation mIoU and
grounding accuracy.

Every report gives accuracies and IoUs as fractions in [0, 1]; the printed tables show percentages.
"""

from ..lazy import lazy_exports

# Imported on first use: the tools read their datasets (evaluation.*_data) to check them before torch loads.
_PUBLIC = {
    "evaluate_box_classification": ".boxclass",
    "BoxClassDataset": ".boxclass_data",
    "load_boxclass_dataset": ".boxclass_data",
    "format_report": ".boxclass_report",
    "evaluate_grounding": ".grounding",
    "format_grounding_report": ".grounding",
    **{name: ".protocols" for name in ("PROTOCOLS", "Protocol", "choose_protocol", "custom_protocol",
                                        "protocol_named")},
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
