"""GFocal-Nano with strong augmentation: now the recipe of configs/Quickstart/gfl_nano_shapes.py
(this file goes once the frontier runs that name it are renamed)."""

from .gfl_nano_shapes import dataloader, export, lr_multiplier, model, optimizer, train

train.output_dir = "./output/quickstart/gfl_nano_strong"
