# Stage-2 region fine-tuning of FG-CLIP 2 large.
_base_ = ["./base.py"]

checkpoint = "qihoo360/fg-clip2-large"
batch_size = 16  # per process
