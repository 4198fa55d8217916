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
import torch
from gfl_testing import REPO
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

from gfocal.cli import worker_failure
from gfocal.config import load_config
from gfocal.data import ShapesSpec, ensure_shapes_dataset
from gfocal.engine import check_inputs
from gfocal.errors import ConfigError

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
train.amp.enabled = False  # float32: the sums of two half-batches equal one batch's to 1e-5
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


class Machine:
    """train_net.py in its own process group (one "machine"), one thread, CPU only (with a GPU
    visible Detectron2's launcher would pick NCCL), its output in a file (a full pipe would block it)."""

    def __init__(self, config, out, overrides, flags=(), machines=1, rank=0, port=None):
        command = [sys.executable, TRAIN_NET, "--config-file", config, *flags]
        if machines > 1:
            command += ["--num-machines", str(machines), "--machine-rank", str(rank)]
            command += ["--dist-url", f"tcp://127.0.0.1:{port}"]
        command += [*overrides, f"train.output_dir={out}"]
        env = dict(os.environ, OMP_NUM_THREADS="1", GFOCAL_DEBUG="", CUDA_VISIBLE_DEVICES="")
        os.makedirs(out, exist_ok=True)
        self.log = os.path.join(out, f"console_rank{rank}_{time.monotonic_ns()}.txt")
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        with open(self.log) as f:
            return f.read()

    def wait(self, timeout=300) -> str:
        """Its exit status must be 0; returns its output."""
        self.process.wait(timeout=timeout)
        assert self.process.returncode == 0, self.output()[-3000:]
        return self.output()

    def kill(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def two_machines(config, out, overrides, flags=()):
    port = free_port()
    return [Machine(config, out, overrides, flags, machines=2, rank=r, port=port) for r in (0, 1)]


def losses(out):
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    return {r["iteration"]: {k: v for k, v in r.items() if k.startswith("loss_")} for r in records if "loss_qfl" in r}


def test_two_machines_give_the_losses_of_one_process(config, tmp_path):
    machines = two_machines(config, tmp_path / "two", ["train.max_iter=1"])
    try:
        for machine in machines:
            machine.wait()
    finally:
        for machine in machines:
            machine.kill()
    Machine(config, tmp_path / "one", ["train.max_iter=1"]).wait()
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert set(two) == set(one) == {0}
    assert set(one[0]) == {"loss_qfl", "loss_box", "loss_dfl"}
    # Each machine normalises by the all-reduced positive count and Detectron2 averages the
    # logged values over workers: together exactly the single process's loss on the whole batch.
    for k in one[0]:
        assert two[0][k] == pytest.approx(one[0][k], rel=1e-5), k
    assert os.path.isfile(tmp_path / "two" / "model_final.pth")


def test_a_lost_machine_stops_the_other_with_a_clear_error_and_resume_continues(config, tmp_path):
    out = tmp_path / "run"
    run = ["train.max_iter=100000", "train.checkpointer.period=2", "train.ema.enabled=True"]
    machines = two_machines(config, out, run)
    try:
        deadline = time.time() + 240
        while not os.path.isfile(out / "model_0000003.pth"):
            assert time.time() < deadline, "no checkpoint within 4 minutes"
            for machine in machines:
                assert machine.process.poll() is None, machine.output()[-3000:]
            time.sleep(0.5)
        machines[1].kill()  # machine 1 goes away
        killed_at = time.time()
        machines[0].process.wait(timeout=120)
        assert time.time() - killed_at < 120
    finally:
        for machine in machines:
            machine.kill()
    assert machines[0].process.returncode == 1
    error = machines[0].output().strip().splitlines()[-1]
    assert error.startswith("error: a training process lost contact with the others"), error
    assert "--resume" in error

    last = int(open(out / "last_checkpoint").read().strip()[len("model_") : -len(".pth")])
    machines = two_machines(config, out, [f"train.max_iter={last + 3}", *run[1:]], ["--resume"])
    try:
        printed = [machine.wait() for machine in machines][0]
    finally:
        for machine in machines:
            machine.kill()
    # The checkpoint holds iteration `last`; both machines continue at the next one, and the
    # weight average (kept on each machine, saved by machine 0) continues from the checkpoint's.
    assert f"Starting training from iteration {last + 1}" in printed
    assert max(losses(out)) == last + 2
    assert torch.load(out / "model_final.pth", weights_only=False)["ema"]["updates"] == last + 3


def test_worker_failures_become_one_line():
    """What the parent of Detectron2's launcher receives from a failed worker: its traceback."""
    trace = "\n-- Process 0 terminated with the following error:\nTraceback (most recent call last):\n  ...\n"
    lost = ProcessRaisedException(trace + "RuntimeError: [gloo/pair.cc:534] Connection closed by peer [::1]:5", 0, 9)
    message, code = worker_failure(lost)
    assert code == 1 and message.startswith("a training process lost contact") and "--resume" in message
    assert "Connection closed by peer" in message
    mistake = ProcessRaisedException(trace + "gfocal.errors.ConfigError: set model.num_classes=4", 1, 9)
    assert worker_failure(mistake) == ("set model.num_classes=4", 2)
    diverged = worker_failure(ProcessRaisedException(trace + "FloatingPointError: Loss became infinite", 0, 9))
    assert diverged[1] == 1 and "lower optimizer.lr" in diverged[0]
    other = worker_failure(ProcessRaisedException(trace + "ValueError: bad things", 1, 9))
    assert other == ("training process 1 failed: ValueError: bad things", 1)
    killed = worker_failure(ProcessExitedException("x", 1, 42, exit_code=-9, signal_name="SIGKILL"))
    assert killed == ("training process 1 (pid 42) was killed by SIGKILL", 1)


def test_cpu_training_in_several_processes_on_a_cuda_machine_is_refused(monkeypatch):
    """Detectron2's launcher picks NCCL whenever CUDA is visible, and NCCL refuses CPU tensors."""
    cfg = load_config(os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"), ["train.amp.enabled=False"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES="):
        check_inputs(cfg, processes=2)
    check_inputs(cfg, processes=1)
