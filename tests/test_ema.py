"""Model EMA (gfocal.engine.ema): the average by hand, checkpoints, resume, evaluation and inference use."""

import copy
import json
import math
import os

import pytest
import torch
from gfl_testing import REPO, small_gfl
from torch import nn

from detectron2.config import instantiate

import gfocal.engine.train_loop
from gfocal.checkpoint import GFLCheckpointer, load_for_inference
from gfocal.config import load_config
from gfocal.data import ShapesSpec, register_shapes
from gfocal.engine import EMAHook, ModelEMA, check_device, do_train
from gfocal.errors import ConfigError


def test_average_by_hand_over_three_steps():
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    ema = ModelEMA(model, decay=0.9, warmup=2.0)
    w0 = model[0].weight.detach().clone()
    expected = w0.clone()
    for step, value in enumerate([1.0, -2.0, 4.0], start=1):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(value)
            model[1].num_batches_tracked.fill_(10 * step)
        ema.update(model)
        d = 0.9 * (1 - math.exp(-step / 2.0))  # the ramp: 0.354, 0.569, 0.701
        expected = d * expected + (1 - d) * value
    torch.testing.assert_close(ema.module[0].weight, expected)
    # Batch-norm statistics are averaged too (from 0, their initial value), counters copied.
    running = 0.0
    for step, value in enumerate([1.0, -2.0, 4.0], start=1):
        d = 0.9 * (1 - math.exp(-step / 2.0))
        running = d * running + (1 - d) * value
    assert ema.module[1].running_mean.item() == pytest.approx(running, rel=1e-6)
    assert ema.module[1].num_batches_tracked.item() == 30
    assert ema.updates == 3
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    assert (model[0].weight == 4.0).all()  # the model itself is untouched


def test_decay_ramp_and_bad_settings():
    ema = ModelEMA(nn.Linear(1, 1), decay=0.999, warmup=100)
    assert ema.decay_at(1) == pytest.approx(0.999 * (1 - math.exp(-0.01)))
    assert ema.decay_at(10_000) == pytest.approx(0.999, rel=1e-6)
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(nn.Linear(1, 1), decay=1.0)
    with pytest.raises(ValueError, match="warmup"):
        ModelEMA(nn.Linear(1, 1), warmup=0)


def saved_with_an_average(folder):
    """A model, its average after one step that moved every weight by 1, saved to folder/ckpt.pth."""
    model = small_gfl()
    ema = ModelEMA(model, decay=0.5, warmup=1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    GFLCheckpointer(model, str(folder), ema=ema).save("ckpt")
    return model, ema


def test_checkpoint_holds_the_average_and_restores_it(tmp_path):
    model, ema = saved_with_an_average(tmp_path)

    fresh = small_gfl(seed=7)
    fresh_ema = ModelEMA(fresh)
    GFLCheckpointer(fresh, str(tmp_path), ema=fresh_ema).resume_or_load("", resume=True)
    assert fresh_ema.restored and fresh_ema.updates == 1
    for (name, a), b in zip(ema.module.state_dict().items(), fresh_ema.module.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b)  # the raw weights stay the model's


def test_inference_takes_the_average_unless_told_not_to(tmp_path):
    model, ema = saved_with_an_average(tmp_path)
    path = str(tmp_path / "ckpt.pth")
    cfg = load_config(os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"))

    weight = "head.gfl_cls.weight"
    loaded = load_for_inference(small_gfl(seed=7), path, cfg)
    torch.testing.assert_close(loaded.state_dict()[weight], ema.module.state_dict()[weight])
    assert not torch.equal(ema.module.state_dict()[weight], model.state_dict()[weight])

    cfg.train.ema.for_inference = False
    raw = load_for_inference(small_gfl(seed=7), path, cfg)
    torch.testing.assert_close(raw.state_dict()[weight], model.state_dict()[weight])


@pytest.fixture
def tiny_run(tmp_path):
    register_shapes("ema_shapes", ShapesSpec(num_train=16, num_val=4, seed=6), str(tmp_path / "data"))

    def config(max_iter, *extra):
        return load_config(
            os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"),
            [
                "dataloader.train.dataset.names=ema_shapes_train",
                "dataloader.test.dataset.names=ema_shapes_val",
                "dataloader.train.total_batch_size=4",
                "dataloader.train.num_workers=0",
                "dataloader.test.num_workers=0",
                f"train.max_iter={max_iter}",
                "train.checkpointer.period=2",
                "train.log_period=1",
                "train.ema.enabled=True",
                "train.ema.warmup=2",
                f"train.output_dir={tmp_path / 'out'}",
                *extra,
            ],
        )

    return tmp_path / "out", config


def test_training_evaluates_and_saves_the_average_and_resume_continues_it(tiny_run, monkeypatch):
    out, config = tiny_run
    evaluated = []
    real_do_test = gfocal.engine.train_loop.do_test

    def recording_do_test(cfg, model):
        evaluated.append(model)
        return real_do_test(cfg, model)

    monkeypatch.setattr(gfocal.engine.train_loop, "do_test", recording_do_test)
    trainer = do_train(config(4, "train.eval_period=2"))
    (hook,) = [h for h in trainer._hooks if isinstance(h, EMAHook)]
    assert len(evaluated) == 2 and all(m is hook.ema.module for m in evaluated)
    final = torch.load(out / "model_final.pth", weights_only=False)
    assert final["ema"]["updates"] == 4
    for k, v in hook.ema.module.state_dict().items():
        torch.testing.assert_close(final["ema"]["weights"][k], v)

    # Killed after iteration 2 (model_0000001.pth holds 2 updates): resume continues the average.
    with open(out / "last_checkpoint", "w") as f:
        f.write("model_0000001.pth")
    two = torch.load(out / "model_0000001.pth", weights_only=False)["ema"]
    restored = []
    monkeypatch.setattr(ModelEMA, "reset", lambda self, model: pytest.fail("a restored average was reset"))
    monkeypatch.setattr(EMAHook, "before_train", lambda self: restored.append(copy.deepcopy(self.ema.state_dict())))
    trainer = do_train(config(5, "train.eval_period=0"), resume=True)
    assert restored[0]["updates"] == 2
    for k, v in two["weights"].items():
        torch.testing.assert_close(restored[0]["weights"][k], v)
    assert torch.load(out / "model_final.pth", weights_only=False)["ema"]["updates"] == 5
    records = [json.loads(line) for line in open(out / "metrics.json")]
    assert [r["iteration"] for r in records if "loss_qfl" in r][-3:] == [2, 3, 4]


def test_fine_tuning_starts_the_average_from_the_loaded_weights(tiny_run, tmp_path):
    out, config = tiny_run
    cfg = config(1, "train.eval_period=0", f"train.init_checkpoint={tmp_path / 'init.pth'}")
    torch.manual_seed(11)
    source = instantiate(cfg.model)
    GFLCheckpointer(source, str(tmp_path)).save("init")
    trainer = do_train(cfg)
    (hook,) = [h for h in trainer._hooks if isinstance(h, EMAHook)]
    # One update with decay 0.9998 * (1 - e^-0.5) = 0.39: the average is 0.39 init + 0.61 step 1.
    # Started from the random init of the built model instead, it would be far from both.
    name = "head.gfl_cls.weight"
    init, now = source.state_dict()[name], trainer.model.state_dict()[name]
    d = hook.ema.decay_at(1)
    torch.testing.assert_close(hook.ema.module.state_dict()[name], d * init + (1 - d) * now)


def test_bad_ema_settings_are_one_clear_error():
    for override, value in (("train.ema.decay=1.5", "decay=1.5"), ("train.ema.warmup=0", "warmup=0")):
        cfg = load_config(os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"), [override])
        with pytest.raises(ConfigError, match=rf"train.ema: decay must be in \[0, 1\) and warmup > 0.*{value}"):
            check_device(cfg)
