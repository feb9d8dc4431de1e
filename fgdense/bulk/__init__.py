"""Bulk runs: a tool's job over any number of images (files, folders, manifests), sharded over ``torchrun``
processes, decoded ahead in DataLoader workers, resumable, with bad files counted and one optional COCO
results file for the whole run. See docs/bulk.md."""
