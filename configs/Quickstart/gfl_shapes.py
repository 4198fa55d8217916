"""GFL v1 on the built-in shapes dataset: the `make quickstart` recipe (CPU, minutes)."""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from ..common.data.shapes import dataloader
from ..common.gfl_schedule import gfl_schedule
from ..common.models.gfl_quickstart import model

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.04
optimizer.params.weight_decay_norm = 0.0

train = model_zoo.get_config("common/train.py").train
train.max_iter = 1500
train.device = "cpu"
train.init_checkpoint = ""
train.output_dir = "./output/quickstart/gfl"
train.checkpointer = dict(period=500, max_to_keep=2)
train.eval_period = 0
train.log_period = 20

lr_multiplier = gfl_schedule(train.max_iter, (1100, 1400), warmup_iters=100)
