"""GFocal-Nano with the quick start's mild augmentations throughout (short sides 128-160, flip),
the recipe configs/Quickstart/gfl_nano_shapes.py's strong one is measured against."""

from .gfl_nano_shapes import dataloader, export, lr_multiplier, model, optimizer, train

dataloader.train.mapper.augmentations = dataloader.train_last.augmentations
dataloader.train_last.fraction = 0.0
train.output_dir = "./output/quickstart/gfl_nano_mild"
