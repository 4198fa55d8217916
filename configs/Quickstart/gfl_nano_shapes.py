"""GFocal-Nano (v1) on the built-in shapes dataset, with the quick start's data and outputs: a
timm LCNet + light PAN + light head (configs/common/models/gfl_nano.py), AdamW at 6e-3 with a
cosine schedule, and strong augmentation (scale jitter over short sides 96-192, colour jitter)
switched to the quick start's mild one (128-160, flip) for the last 15% of training. Every length
follows train.max_iter alone: `train.max_iter=2400` is twice the budget and nothing else.
Its 1,200 iterations take about the quick start's training time on a CPU (a nano step costs
~1.25x a quick-start one). The mild recipe throughout: configs/Quickstart/gfl_nano_shapes_mild.py;
both against YOLO: projects/GFocal/README.md, "Against YOLO at equal training time".
`tools/quickstart.py --config-file configs/Quickstart/gfl_nano_shapes.py`."""

import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from ..common.data.shapes import dataloader, strong_augmentations
from ..common.gfl_schedule import cosine_schedule
from ..common.models.gfl_nano import export, model
from .gfl_shapes import train

model.num_classes = 4

optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=6e-3,
    betas=(0.9, 0.999),
    weight_decay=0.05,
)
lr_multiplier = cosine_schedule(warmup=0.05, end_value=0.05)
# dataloader.train_last keeps the quick start's mild augmentations (configs/common/data/shapes.py).
dataloader.train.mapper.augmentations = strong_augmentations()
dataloader.train_last.fraction = 0.15

train.max_iter = 1200
train.output_dir = "./output/quickstart/gfl_nano"
train.ema = dict(enabled=False, decay=0.998, warmup=200, for_inference=True)
