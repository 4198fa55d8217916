"""Localization Distillation (LD): the frozen teacher and the loss settings, for a config's
top-level ``distill`` (``train_net.py`` attaches it to ``model``; see gfocal.modeling.distill).

Main region (mmdetection's LDHead): ``ld_weight`` 0.25 at T 10. The full recipe
(HikariTJU/LD) adds LD on the valuable localization region (0.25, T 10, alpha 0.25) and class KD
at the positives (10, T 2). These are the published weights, for 2 images per GPU.
"""

from detectron2.config import LazyCall as L

from gfocal.model_zoo import load_trained
from gfocal.modeling import LocalizationDistiller

PUBLISHED_IMAGES_PER_WORKER = 2  # mmdetection's and HikariTJU/LD's configs: 8 GPUs x 2 images


def ld(teacher_config: str, teacher_weights: str, full_recipe: bool = False, images_per_worker: int = 2):
    """A lazy :class:`LocalizationDistiller` under the teacher of ``teacher_config`` (a path or a
    GFocal config name) with ``teacher_weights``.

    The main-region and VLR terms are sums over each worker's images (mmdetection's normaliser:
    4 sides, not the summed weights), so their published weights hold at 2 images per worker;
    ``images_per_worker`` scales both by 2 / images_per_worker (16 images on one worker: 1/8).
    Class KD is a mean over the positives and keeps its weight.
    """
    scale = PUBLISHED_IMAGES_PER_WORKER / images_per_worker
    extra = dict(vlr_weight=0.25 * scale, vlr_temperature=10.0, vlr_alpha=0.25, kd_weight=10.0, kd_temperature=2.0)
    return L(LocalizationDistiller)(
        teacher=L(load_trained)(config_file=teacher_config, weights=teacher_weights),
        ld_weight=0.25 * scale,
        ld_temperature=10.0,
        **(extra if full_recipe else {}),
    )
