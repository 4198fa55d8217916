"""The GFL reference schedules: 500 linear warm-up iterations from 0.001x, steps at 2/3 and 8/9.

"1x" = 90k iterations at batch 16 (steps 60k, 80k); "2x" = 180k (steps 120k, 160k).
"""

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler


def gfl_schedule(max_iter: int, steps, warmup_iters: int = 500, warmup_factor: float = 0.001):
    """A lazy LR multiplier: linear warm-up, then x0.1 at each step."""
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=list(steps), num_updates=max_iter),
        warmup_length=warmup_iters / max_iter,
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )


lr_multiplier_1x = gfl_schedule(90000, (60000, 80000))
lr_multiplier_2x = gfl_schedule(180000, (120000, 160000))
