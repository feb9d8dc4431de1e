"""Evaluation: box classification (BoxClass-CN, COCO, LVIS; the official protocols), segmentation mIoU and
grounding accuracy.

Every report gives accuracies and IoUs as fractions in [0, 1]; the printed tables show percentages.
"""

from importlib import import_module

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


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fgdense.evaluation' has no attribute {name!r}")
