"""Evaluation: box classification (BoxClass-CN, COCO, LVIS) and segmentation mIoU."""
