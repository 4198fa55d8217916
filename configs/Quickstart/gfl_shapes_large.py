"""GFL v1 on the built-in large-image dataset (gfocal_shapes_large), trained on 256 px slices and
evaluated sliced (256 px tiles, a quarter overlap, plus the whole image, distribution-aware
merge): the quick-start model and optimiser, 8 crops a step. `dataloader.test.slicing.enabled=False`
evaluates the whole image at the network's 256 px input instead."""

from ..common.data.shapes_large import dataloader
from ..common.gfl_schedule import gfl_schedule
from .gfl_shapes import model, optimizer, train  # noqa: F401  (model: the quick start's)

dataloader.test.slicing.enabled = True
optimizer.lr = 0.02  # half the quick start's: half its batch (8 crops)

train.max_iter = 1500
train.output_dir = "./output/quickstart/gfl_large"
train.eval_period = 0
train.checkpointer = dict(period=500, max_to_keep=2)
lr_multiplier = gfl_schedule(train.max_iter, (1125, 1400), warmup_iters=100)
