"""GFocal-Nano v2 (DGQP) on the built-in shapes dataset: the nano recipe with a v2 head."""

from .gfl_nano_shapes import dataloader, export, lr_multiplier, model, optimizer, train

model.head.use_dgqp = True
train.output_dir = "./output/quickstart/gflv2_nano"
