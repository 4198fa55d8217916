"""COCO 2017 data, optimiser and training loop of the GFL reference 1x recipe.

Single-scale training at (800, max 1333) with horizontal flip, RGB input; SGD lr 0.01 at batch
16, momentum 0.9, weight decay 1e-4 on every parameter (norms included, as mmdetection).
"""

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from gfocal.data import checked_dataset_dicts
from gfocal.engine import FastCOCOEvaluator

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
# Training data is checked once when loaded (annotations, image files; see gfocal.data.checks).
dataloader.train.dataset._target_ = checked_dataset_dicts
dataloader.train.mapper.use_instance_mask = False
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 16
# Milder augmentations for the last share of training (gfocal.engine.stages), off (fraction 0).
dataloader.train_last = dict(fraction=0.0, augmentations=dataloader.train.mapper.augmentations)
# Box AP by faster-coco-eval: pycocotools' numbers at compiled speed, without Detectron2's
# compiled ops (see gfocal.engine.evaluation).
dataloader.evaluator = L(FastCOCOEvaluator)(dataset_name="${..test.dataset.names}")

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.01
optimizer.params.weight_decay_norm = None

train = model_zoo.get_config("common/train.py").train
train.max_iter = 90000
train.checkpointer = dict(period=5000, max_to_keep=3)
train.eval_period = 0  # evaluate once, at the end of training
# A moving average of the weights (gfocal.engine.ema); off as in the reference, unmeasured on COCO.
train.ema = dict(enabled=False, decay=0.9998, warmup=2000, for_inference=True)
# Test-time augmentation for --eval-only (gfocal.modeling.tta.GFLWithTTA; Detectron2's TEST.AUG names):
# two scales and their mirrors, merged before one NMS. Off unless dataloader.tta.enabled=True.
dataloader.tta = dict(enabled=False, min_sizes=[640, 800], max_size=1333, flip=True)
# Sliced evaluation (gfocal.modeling.slicing) for images with small objects, off: tiles of `size` original
# pixels sharing `overlap` of it, plus the whole image; merges: nms, greedy (SAHI's), distribution.
dataloader.test.slicing = dict(enabled=False, size=512, overlap=0.25, merge="distribution", whole_image=True)
