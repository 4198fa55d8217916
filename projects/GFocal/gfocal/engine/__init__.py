"""Training, evaluation and prediction, as Detectron2's ``engine`` and ``evaluation`` hold them.

- :mod:`.train_loop`: the train and evaluation loops behind ``train_net.py``, a runner for
  several trainings side by side and "train unless finished" over it;
- :mod:`.precision`: the trainer for mixed precision (CPU bfloat16, CUDA float16);
- :mod:`.ema`: a moving average of the weights, as a hook;
- :mod:`.stages`: milder augmentations for the last part of training, as a hook;
- :mod:`.evaluation`: COCO box AP with faster-coco-eval, Pascal VOC AP50 from a dataset's records;
- :mod:`.predictor`: a single-image predictor for lazy configs and the test-time input that
  evaluation, the demo and the exporter share.
"""

from .ema import EMAHook, ModelEMA, ema_settings
from .evaluation import FastCOCOEvaluator, VOCEvaluator, faster_cocoeval, voc_average_precision
from .precision import (
    CPUAutocastTrainer,
    build_trainer,
    cpu_has_bf16,
    cpu_name,
    describe_precision,
    interleaved_medians,
    uses_channels_last,
)
from .predictor import LazyPredictor, evaluation_input, evaluation_metadata, instances_from_runtime
from .stages import LastStageAugmentations, last_stage_hook
from .train_loop import (
    TrainingRun,
    check_device,
    check_inputs,
    do_test,
    do_train,
    evaluate_checkpoint,
    run_trainings,
    train_unless_finished,
)

__all__ = [
    "CPUAutocastTrainer",
    "EMAHook",
    "FastCOCOEvaluator",
    "LastStageAugmentations",
    "LazyPredictor",
    "ModelEMA",
    "TrainingRun",
    "VOCEvaluator",
    "build_trainer",
    "check_device",
    "check_inputs",
    "cpu_has_bf16",
    "cpu_name",
    "describe_precision",
    "do_test",
    "do_train",
    "ema_settings",
    "evaluate_checkpoint",
    "evaluation_input",
    "evaluation_metadata",
    "faster_cocoeval",
    "instances_from_runtime",
    "interleaved_medians",
    "last_stage_hook",
    "run_trainings",
    "train_unless_finished",
    "uses_channels_last",
    "voc_average_precision",
]
