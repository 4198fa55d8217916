"""The GFL reference schedules: 500 linear warm-up iterations from 0.001x, steps at 2/3 and 8/9.

"1x" = 90k iterations at batch 16 (steps 60k, 80k); "2x" = 180k (steps 120k, 160k).
"""

from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler

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


def cosine_schedule(warmup: float = 0.05, end_value: float = 0.05, warmup_factor: float = 0.001):
    """A lazy LR multiplier that follows ``train.max_iter`` alone: linear warm-up over the first
    ``warmup`` of training from ``warmup_factor``, then a cosine from 1 to ``end_value`` at the
    end. Every length is a share of the run, so ``train.max_iter=2x`` is twice the budget and
    nothing else needs to change."""
    return L(WarmupParamScheduler)(
        scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=end_value),
        warmup_length=warmup,
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )
