"""The last stage's augmentations (gfocal.engine.stages): the loader switches once, at its
iteration, and before the first step of a run resumed past it; the config key's arithmetic and
its bad values."""

import pytest
import torch
from gfl_testing import REPO
from torch import nn

from detectron2.engine import SimpleTrainer

from gfocal.config import load_config
from gfocal.engine import LastStageAugmentations, last_stage_hook
from gfocal.engine import stages as stages_module
from gfocal.errors import ConfigError


class Recorder(nn.Module):
    """A 'model' that notes which loader each step's batch came from."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, batch):
        self.seen.append(batch)
        return {"loss": self.w * 0 + self.w}


def endless(tag):
    while True:
        yield tag


def train(start, end, switch_at):
    model = Recorder()
    trainer = SimpleTrainer(model, endless("strong"), torch.optim.SGD(model.parameters(), lr=0.1))
    built = []
    hook = LastStageAugmentations(switch_at, lambda: built.append(1) or endless("mild"))
    trainer.register_hooks([hook])
    trainer.train(start, end)
    return model.seen, len(built)


def test_switches_once_at_its_iteration_and_before_a_resumed_run_starts():
    assert train(0, 5, switch_at=3) == (["strong"] * 3 + ["mild"] * 2, 1)
    assert train(3, 5, switch_at=3) == (["mild"] * 2, 1)  # resumed exactly at the switch
    assert train(4, 6, switch_at=3) == (["mild"] * 2, 1)  # resumed past it
    assert train(0, 3, switch_at=3) == (["strong"] * 3, 0)  # the run ends before it


def test_the_config_key_follows_max_iter_and_replaces_only_the_augmentations(monkeypatch):
    cfg = load_config(f"{REPO}/configs/Quickstart/gfl_nano_shapes_mild.py")
    assert last_stage_hook(cfg) is None  # fraction 0: off
    cfg.dataloader.train_last = dict(fraction=0.15, augmentations=cfg.dataloader.train.mapper.augmentations[1:])
    for max_iter, start in ((1000, 850), (2000, 1700), (7, 6), (10, 8)):
        cfg.train.max_iter = max_iter
        assert last_stage_hook(cfg).start_iter == start
    hook, built = last_stage_hook(cfg), []
    monkeypatch.setattr(stages_module, "instantiate", lambda node: built.append(node) or "loader")
    assert hook._build() == "loader"
    (loader_cfg,) = built
    assert len(loader_cfg.mapper.augmentations) == 1 and len(cfg.dataloader.train.mapper.augmentations) == 2
    assert loader_cfg.total_batch_size == cfg.dataloader.train.total_batch_size
    assert loader_cfg.dataset.names == cfg.dataloader.train.dataset.names


@pytest.mark.parametrize(
    "value, message",
    [
        (dict(fraction=1.0, augmentations=[]), r"expected fraction in \[0, 1\) .*got fraction=1.0"),
        (dict(fraction=-0.1, augmentations=[]), r"expected fraction in \[0, 1\) .*got fraction=-0.1"),
        (dict(fraction="abc", augmentations=[]), r"expected fraction in \[0, 1\) .*got fraction=abc"),
        (dict(fraction=0.2), r"expected .*got fraction=0.2 and no augmentations"),
    ],
)
def test_bad_settings_are_one_clear_error(value, message):
    cfg = load_config(f"{REPO}/configs/Quickstart/gfl_nano_shapes.py")
    cfg.dataloader.train_last = value
    with pytest.raises(ConfigError, match=r"dataloader.train_last: " + message):
        last_stage_hook(cfg)


def test_an_augmentation_that_does_not_build_fails_before_training_and_no_stage_is_none():
    from detectron2.config import LazyCall as L
    from detectron2.data import transforms as T

    cfg = load_config(f"{REPO}/configs/Quickstart/gfl_nano_shapes.py")
    cfg.dataloader.train_last = dict(fraction=0.2, augmentations=[L(T.RandomFlip)(sideways=True)])
    with pytest.raises(ConfigError, match=r"dataloader.train_last.augmentations: TypeError: .*sideways"):
        last_stage_hook(cfg)
    cfg.dataloader.train_last.augmentations = [L(T.RandomFlip)(horizontal=True)]
    cfg.train.max_iter = 2  # 0.2 x 2 rounds to no iteration
    assert last_stage_hook(cfg) is None


def test_a_bad_fraction_through_train_net_is_one_line_and_writes_nothing(tmp_path, capsys):
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location("train_net_stage_error", os.path.join(REPO, "train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    out = tmp_path / "out"
    config = f"{REPO}/configs/Quickstart/gfl_nano_shapes.py"
    argv = ["--config-file", config, f"train.output_dir={out}", "dataloader.train_last.fraction=1.0"]
    assert train_net.invoke_main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "dataloader.train_last" in errors[0], errors
    assert not out.exists()


def test_train_net_switches_at_its_share_of_max_iter(tmp_path):
    """`dataloader.train_last.fraction=0.5` on the nano config over 4 iterations: the log names the
    switch at iteration 2, and the run finishes."""
    import importlib.util
    import os

    from gfocal.data import ShapesSpec, register_shapes

    register_shapes("stage_shapes", ShapesSpec(num_train=8, num_val=2, seed=5), str(tmp_path / "data"))
    spec = importlib.util.spec_from_file_location("train_net_stages", os.path.join(REPO, "train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    overrides = [
        "dataloader.train.dataset.names=stage_shapes_train", "dataloader.test.dataset.names=stage_shapes_val",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
        "train.eval_period=0", "train.max_iter=4", f"train.output_dir={tmp_path / 'out'}",
        "dataloader.train_last.fraction=0.5",
    ]  # fmt: skip
    config = f"{REPO}/configs/Quickstart/gfl_nano_shapes.py"
    assert train_net.invoke_main(["--config-file", config, *overrides]) == 0
    log = (tmp_path / "out" / "log.txt").read_text().splitlines()
    switches = [line for line in log if "the last stage's augmentations" in line]
    assert len(switches) == 1 and "Iteration 2: the last stage's augmentations" in switches[0], switches
    assert (tmp_path / "out" / "model_final.pth").is_file()
