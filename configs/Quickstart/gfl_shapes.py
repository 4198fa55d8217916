"""GFL v1 on the built-in shapes dataset: the `make quickstart` recipe (CPU, minutes)."""

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from gfocal.engine import cpu_has_bf16

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
train.eval_period = 400  # ~15 s per evaluation; gives the AP curve
train.log_period = 20
# bfloat16 autocast where the CPU has bf16 units (1.5x faster steps), float32 elsewhere.
train.amp.enabled = cpu_has_bf16()
# A moving average of the weights (gfocal.engine.ema): off, measured worse here (57.1 vs 58.3 AP with
# decay 0.998: the step schedule's last, low-lr weights are better than an average over them).
train.ema = dict(enabled=False, decay=0.998, warmup=200, for_inference=True)

lr_multiplier = gfl_schedule(train.max_iter, (1125, 1400), warmup_iters=100)
train.seed = 0  # Detectron2's default_setup seeds every RNG with it
