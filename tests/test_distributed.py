"""Loss normalisation across workers: two gloo processes on CPU vs one process."""

import os
import socket

import pytest
import torch
from gfl_testing import make_input, small_gfl

from detectron2.engine import launch
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

H, W = 128, 160


def scene(with_gt: bool, seed: int):
    if with_gt:
        return make_input(H, W, [(10, 20, 90, 110), (70, 30, 150, 80), (20, 60, 60, 120)], [0, 2, 1], seed=seed)
    return make_input(H, W, seed=seed)


def model_for_test():
    model = small_gfl(seed=7)
    # Confident class scores make the summed quality weights large, so the normalisers' clamps
    # at 1 are inactive (where the reference itself depends on the number of workers).
    torch.nn.init.constant_(model.head.gfl_cls.bias, 3.0)
    model.train()
    return model


def losses_of(model, inputs):
    with EventStorage() as storage:
        losses = model(inputs)
    norm_quality = storage.history("gfl/norm_quality").latest()
    return {k: v.detach() for k, v in losses.items()}, norm_quality


def worker(out_dir, gts):
    rank = comm.get_rank()
    model = model_for_test()
    losses, _ = losses_of(model, [scene(gts[rank], seed=rank)])
    torch.save(losses, os.path.join(out_dir, f"rank{rank}.pt"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("gts", [(True, True), (True, False)], ids=["both", "rank1-no-positives"])
def test_two_workers_average_to_one_process_on_both_images(tmp_path, gts):
    launch(worker, 2, dist_url=f"tcp://127.0.0.1:{free_port()}", args=(str(tmp_path), gts))
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    single, norm_quality = losses_of(model_for_test(), [scene(gts[0], 0), scene(gts[1], 1)])
    # The clamps at 1 are inactive: the mean over two workers of the weights exceeds 1.
    assert norm_quality / 2 > 1
    for key in ("loss_qfl", "loss_box", "loss_dfl"):
        mean = (per_rank[0][key] + per_rank[1][key]) / 2
        torch.testing.assert_close(mean, single[key], rtol=1e-4, atol=1e-6)
    if not gts[1]:
        assert per_rank[1]["loss_box"] == 0 and per_rank[1]["loss_qfl"] > 0
