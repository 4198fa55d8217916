"""Every config under configs/ loads, instantiates its model and runs one CPU forward."""

import glob
import os

import pytest
import torch
from gfl_testing import REPO

from detectron2.config import LazyConfig, instantiate

CONFIGS = sorted(
    os.path.relpath(p, REPO)
    for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True)
    if "/common/" not in p
)


def test_there_are_configs():
    assert "configs/COCO-Detection/gfl_R_50_FPN_1x.py" in CONFIGS
    assert "configs/COCO-Detection/gflv2_R_50_FPN_1x.py" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS)
def test_config_instantiates_and_runs(path):
    cfg = LazyConfig.load(os.path.join(REPO, path))
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{path} lacks {key}"
    # Serialisable: the trainer writes config.yaml into the output dir and it must reload.
    assert LazyConfig.to_py(cfg)
    model = instantiate(cfg.model).eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 200, 249) * 255}])
    assert out[0]["instances"].image_size == (200, 249)
    scheduler = instantiate(cfg.lr_multiplier)
    assert scheduler(0.0) < 0.01 and scheduler(0.5) > 0.5 and scheduler(1.0) <= scheduler(0.5)


def test_reference_recipe_in_1x_configs():
    for name in ("gfl_R_50_FPN_1x", "gflv2_R_50_FPN_1x"):
        cfg = LazyConfig.load(os.path.join(REPO, f"configs/COCO-Detection/{name}.py"))
        assert cfg.optimizer.lr == 0.01 and cfg.optimizer.momentum == 0.9
        assert cfg.optimizer.weight_decay == 1e-4
        assert cfg.dataloader.train.total_batch_size == 16
        assert cfg.train.max_iter == 90000
        sched = instantiate(cfg.lr_multiplier)
        it = lambda i: sched(i / 90000)  # noqa: E731
        assert it(0) == pytest.approx(0.001) and it(500) == 1.0
        assert it(59999) == 1.0 and it(60000) == pytest.approx(0.1) and it(80000) == pytest.approx(0.01)
        assert cfg.model.input_format == "RGB" and cfg.dataloader.train.mapper.image_format == "RGB"
        assert list(cfg.model.pixel_mean) == [123.675, 116.28, 103.53]
        assert cfg.model.backbone.bottom_up.stages.stride_in_1x1 is False
        assert cfg.model.head.use_dgqp == name.startswith("gflv2")
        aug = cfg.dataloader.train.mapper.augmentations[0]
        assert aug.short_edge_length == 800 and aug.max_size == 1333
        assert cfg.dataloader.train.dataset.names == "coco_2017_train"
        assert cfg.dataloader.test.dataset.names == "coco_2017_val"


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_can_be_evaluated_sliced_or_with_tta(path):
    """``dataloader.test.slicing`` and ``dataloader.tta`` stand in every config (slicing off but
    in the large-image one), so either is one override away on any config."""
    from gfocal.config import load_config
    from gfocal.modeling import slicing_settings

    cfg = load_config(os.path.join(REPO, path), ["dataloader.test.slicing.enabled=True"])
    assert slicing_settings(cfg.dataloader.test.slicing).overlap == 0.25
    assert "enabled" in cfg.dataloader.tta
    default = LazyConfig.load(os.path.join(REPO, path)).dataloader.test.slicing.enabled
    assert default == path.endswith("gfl_shapes_large.py")


@pytest.mark.parametrize("max_iter", [1500, 3000])
def test_nano_schedule_follows_max_iter_alone(max_iter):
    """The light recipe's LR as the trainer runs it (Detectron2's LRMultiplier over
    ``train.max_iter``): warm-up over the first 5%, cosine to 5% at the end, for any max_iter."""
    import math

    from detectron2.solver import LRMultiplier

    from gfocal.config import load_config

    cfg = load_config(os.path.join(REPO, "configs/Quickstart/gfl_nano_shapes.py"), [f"train.max_iter={max_iter}"])
    base = cfg.optimizer.lr
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = LRMultiplier(opt, instantiate(cfg.lr_multiplier), max_iter=max_iter)
    lrs = []
    for _ in range(max_iter):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    warm = int(0.05 * max_iter)

    def cosine(i):
        return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / max_iter)))

    assert lrs[0] == pytest.approx(base * 0.001)
    alpha = (warm // 2) / (0.05 * max_iter)  # linear from 0.001 x base to where the cosine is at its end
    assert lrs[warm // 2] == pytest.approx(base * 0.001 * (1 - alpha) + cosine(0.05 * max_iter) * alpha, rel=1e-6)
    assert lrs[warm] == pytest.approx(cosine(warm), rel=1e-6)
    assert lrs[max_iter // 2] == pytest.approx(base * 0.525, rel=1e-6)
    assert lrs[-1] == pytest.approx(base * 0.05, rel=0.01)
