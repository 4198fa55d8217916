"""GFocal-Nano on the built-in data with strong augmentation: scale jitter over short sides
96-192 and colour jitter, switched to the quick start's mild augmentations (128-160, flip) for
the last 15% of training (dataloader.train_last; the switch follows train.max_iter alone).
At the nano's 1x and 4x budgets (1,205 and 4,818 iterations): 50.9 and 72.7 val AP against
47.0 and 68.3 with the mild ones (projects/GFocal/README.md, "Against YOLO at equal training
time")."""

from ..common.data.shapes import strong_augmentations
from .gfl_nano_shapes import dataloader, export, lr_multiplier, model, optimizer, train

dataloader.train.mapper.augmentations = strong_augmentations()
dataloader.train_last.fraction = 0.15
train.output_dir = "./output/quickstart/gfl_nano_strong"
