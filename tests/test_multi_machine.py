"""The scale-out rehearsal: train_net.py as two "machines" on localhost (one process each, gloo on
the CPU) through Detectron2's launcher, as a user runs it on two hosts."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from gfl_testing import REPO

from gfocal.data import ShapesSpec, ensure_shapes_dataset

TRAIN_NET = os.path.join(REPO, "train_net.py")
SPEC = ShapesSpec(num_train=32, num_val=4, seed=8)

# The quick-start recipe on a small generated split; frozen batch norms and no flip, so that the
# two machines' half-batches together are exactly the single process's batch.
CONFIG = """
from detectron2.config import LazyConfig

from gfocal.data import ShapesSpec, register_shapes

register_shapes("two_machines", ShapesSpec(num_train={num_train}, num_val={num_val}, seed={seed}), {root!r})
_base = LazyConfig.load({base!r})
dataloader, lr_multiplier, model, optimizer, train = (
    _base.dataloader, _base.lr_multiplier, _base.model, _base.optimizer, _base.train
)
dataloader.train.dataset.names = "two_machines_train"
dataloader.test.dataset.names = "two_machines_val"
dataloader.train.mapper.augmentations = []
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 0
dataloader.test.num_workers = 0
model.backbone.bottom_up.stem.norm = "FrozenBN"
model.backbone.bottom_up.stages.norm = "FrozenBN"
train.log_period = 1
train.eval_period = 0
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_machines")
    root = str(tmp / "data")
    ensure_shapes_dataset(SPEC, root)  # here, not by both machines at once
    path = tmp / "config.py"
    path.write_text(
        CONFIG.format(
            num_train=SPEC.num_train,
            num_val=SPEC.num_val,
            seed=SPEC.seed,
            root=root,
            base=os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"),
        )
    )
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(config, out, overrides, flags=(), machines=1, rank=0, port=None):
    """train_net.py in its own process group (one "machine"), one thread."""
    command = [sys.executable, TRAIN_NET, "--config-file", config, *flags]
    if machines > 1:
        command += [
            "--num-machines",
            str(machines),
            "--machine-rank",
            str(rank),
            "--dist-url",
            f"tcp://127.0.0.1:{port}",
        ]
    command += [*overrides, f"train.output_dir={out}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", GFOCAL_DEBUG="")
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def finish(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stdout, stderr


def losses(out):
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    return {r["iteration"]: {k: v for k, v in r.items() if k.startswith("loss_")} for r in records if "loss_qfl" in r}


def test_two_machines_give_the_losses_of_one_process(config, tmp_path):
    port = free_port()
    machines = [start(config, tmp_path / "two", ["train.max_iter=1"], machines=2, rank=r, port=port) for r in (0, 1)]
    for process in machines:
        finish(process)
    finish(start(config, tmp_path / "one", ["train.max_iter=1"]))
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert set(two) == set(one) == {0}
    assert set(one[0]) == {"loss_qfl", "loss_box", "loss_dfl"}
    # Each machine normalises by the all-reduced positive count and Detectron2 averages the
    # logged values over workers: together exactly the single process's loss on the whole batch.
    for k in one[0]:
        assert two[0][k] == pytest.approx(one[0][k], rel=1e-5), k
    assert os.path.isfile(tmp_path / "two" / "model_final.pth")


def test_a_lost_machine_stops_the_other_with_a_clear_error_and_resume_continues(config, tmp_path):
    out, port = tmp_path / "run", free_port()
    run = ["train.max_iter=100000", "train.checkpointer.period=2"]
    machines = [start(config, out, run, machines=2, rank=r, port=port) for r in (0, 1)]
    try:
        deadline = time.time() + 240
        while not os.path.isfile(out / "model_0000003.pth"):
            assert time.time() < deadline, "no checkpoint within 4 minutes"
            assert all(p.poll() is None for p in machines), machines[0].stderr.read()[-3000:]
            time.sleep(0.5)
        os.killpg(machines[1].pid, signal.SIGKILL)  # machine 1 goes away
        killed_at = time.time()
        _, stderr = machines[0].communicate(timeout=120)
        assert time.time() - killed_at < 120
    finally:
        for p in machines:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert machines[0].returncode == 1
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("error: a training process lost contact with the others"), stderr[-3000:]
    assert "--resume" in error

    last = int(open(out / "last_checkpoint").read().strip()[len("model_") : -len(".pth")])
    port = free_port()
    again = [f"train.max_iter={last + 3}", "train.checkpointer.period=2"]
    machines = [start(config, out, again, ["--resume"], machines=2, rank=r, port=port) for r in (0, 1)]
    stdout, stderr = [finish(process) for process in machines][0]
    # The checkpoint holds iteration `last`; both machines continue at the next one.
    assert f"Starting training from iteration {last + 1}" in stdout + stderr
    assert max(losses(out)) == last + 2
    assert os.path.isfile(out / "model_final.pth")
