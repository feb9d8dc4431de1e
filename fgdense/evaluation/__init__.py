"""Evaluation: box classification (BoxClass-CN, COCO, LVIS) and segmentation mIoU."""

from .boxclass import evaluate_box_classification, format_report, load_boxclass_dataset
