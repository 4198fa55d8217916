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
train.max_iter = 1600
train.device = "cpu"
train.init_checkpoint = ""
train.output_dir = "./output/quickstart/gfl"
train.checkpointer = dict(period=500, max_to_keep=2)
train.eval_period = 400  # ~15 s per evaluation; gives the AP curve
train.log_period = 20
# A moving average of the weights (gfocal.ema), evaluated and predicted with.
train.ema = dict(enabled=False, decay=0.9998, warmup=2000, for_inference=True)

lr_multiplier = gfl_schedule(train.max_iter, (1200, 1500), warmup_iters=100)
train.seed = 0  # Detectron2's default_setup seeds every RNG with it
