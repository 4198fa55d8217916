"""GFocal-Nano (v1) on the built-in shapes dataset, with the quick start's data and outputs: a
timm LCNet + light PAN + light head (configs/common/models/gfl_nano.py), AdamW at 6e-3 with a
cosine schedule that follows train.max_iter alone (at 1,500 iterations: 53.9 val AP; 2e-3 with
EMA gave 27.8, SGD at the quick start's 0.04 19.1: projects/GFocal/README.md).
`tools/quickstart.py --config-file configs/Quickstart/gfl_nano_shapes.py`."""

import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from ..common.data.shapes import dataloader
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

train.max_iter = 1500
train.output_dir = "./output/quickstart/gfl_nano"
train.ema = dict(enabled=False, decay=0.998, warmup=200, for_inference=True)  # on, with 2e-3: 27.8 AP
