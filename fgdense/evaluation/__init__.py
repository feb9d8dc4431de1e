"""Evaluation: box classification (BoxClass-CN, COCO, LVIS; the official protocols), segmentation mIoU and
grounding accuracy.

Every report gives accuracies and IoUs as fractions in [0, 1]; the printed tables show percentages.
"""

from .boxclass import evaluate_box_classification
from .boxclass_data import BoxClassDataset, load_boxclass_dataset
from .boxclass_report import format_report
from .grounding import evaluate_grounding, format_grounding_report
from .protocols import PROTOCOLS, Protocol, choose_protocol, custom_protocol, protocol_named

__all__ = ["PROTOCOLS", "BoxClassDataset", "Protocol", "choose_protocol", "custom_protocol",
           "evaluate_box_classification", "evaluate_grounding", "format_grounding_report", "format_report",
           "load_boxclass_dataset", "protocol_named"]
