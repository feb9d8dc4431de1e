# Stage-2 region fine-tuning of FG-CLIP 2 so400m.
_base_ = ["./base.py"]

checkpoint = "qihoo360/fg-clip2-so400m"
batch_size = 8  # per process
