"""train_net.py, the demo and the metrics plot, end to end on a tiny generated dataset (CPU)."""

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from gfl_testing import REPO

from detectron2.config import LazyConfig, instantiate

from gfocal.data import ShapesSpec, register_shapes

CONFIG = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")


def load_script(relpath, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train the quick-start config for 4 iterations on a tiny copy of the shapes data."""
    tmp = tmp_path_factory.mktemp("run")
    register_shapes("tiny_shapes", ShapesSpec(num_train=24, num_val=6, seed=2), str(tmp / "data"))
    overrides = [
        "dataloader.train.dataset.names=tiny_shapes_train",
        "dataloader.test.dataset.names=tiny_shapes_val",
        "dataloader.train.total_batch_size=4",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "train.max_iter=4",
        "train.checkpointer.period=2",
        "train.log_period=1",
        f"train.output_dir={tmp / 'out'}",
        "model.backbone.out_channels=64",
        "model.head.conv_dims=[64]",
    ]
    # The head's input_shape follows the FPN width.
    overrides.append("model.head.input_shape=[{channels:64},{channels:64},{channels:64},{channels:64},{channels:64}]")
    train_net = load_script("train_net.py", "train_net")
    args = train_net.get_parser().parse_args(["--config-file", CONFIG, *overrides])
    train_net.main(args)
    return tmp, overrides, train_net


def test_train_net_trains_checkpoints_logs_and_evaluates(trained):
    tmp, _, _ = trained
    out = tmp / "out"
    assert (out / "model_final.pth").exists() and (out / "model_0000001.pth").exists()
    assert (out / "config.yaml").exists()
    records = [json.loads(line) for line in open(out / "metrics.json")]
    keys = set().union(*records)
    for key in ("loss_qfl", "loss_box", "loss_dfl", "lr", "gfl/norm_pos", "gfl/dfl_clamped_frac", "bbox/AP"):
        assert key in keys, key
    assert max(r["iteration"] for r in records if "loss_qfl" in r) == 3


def test_train_net_resumes_from_the_last_checkpoint(trained):
    tmp, overrides, train_net = trained
    os.remove(tmp / "out" / "model_final.pth")
    with open(tmp / "out" / "last_checkpoint", "w") as f:
        f.write("model_0000001.pth")  # as if killed after iteration 2
    args = train_net.get_parser().parse_args(["--config-file", CONFIG, "--resume", *overrides, "train.max_iter=5"])
    train_net.main(args)
    records = [json.loads(line) for line in open(tmp / "out" / "metrics.json")]
    resumed = [r["iteration"] for r in records if "loss_qfl" in r][-3:]
    assert resumed == [2, 3, 4]  # continued at iteration 2, did not start over
    assert (tmp / "out" / "model_final.pth").exists()


@pytest.fixture(scope="module")
def overfit(trained):
    """60 iterations on the 6 tiny val images themselves: a model that detects them well."""
    tmp, overrides, train_net = trained
    out = tmp / "overfit"
    run = [o for o in overrides if not o.startswith(("train.", "dataloader.train.dataset"))] + [
        "dataloader.train.dataset.names=tiny_shapes_val",
        "dataloader.train.total_batch_size=6",
        "train.max_iter=60",
        "train.eval_period=0",
        f"train.output_dir={out}",
        "lr_multiplier.warmup_length=0.05",
        "lr_multiplier.scheduler.milestones=[48,54]",
        "lr_multiplier.scheduler.num_updates=60",
        # Trained and tested at the images' own 128 pixels: 60 steps learn one scale well.
        "dataloader.train.mapper.augmentations.0.short_edge_length=[128]",
        "dataloader.test.mapper.augmentations.0.short_edge_length=128",
    ]
    train_net.main(train_net.get_parser().parse_args(["--config-file", CONFIG, *run]))
    return out / "model_final.pth", run


def test_train_net_eval_only_uses_the_weights(trained, overfit, tmp_path, capsys):
    """--eval-only with the trained weights scores far above the same model with random
    weights (an evaluation that never loaded its weights would score like the random one)."""
    _, _, train_net = trained
    weights, run = overfit
    random_weights = tmp_path / "random.pth"
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), run)
    torch.save({"model": instantiate(cfg.model).state_dict()}, random_weights)

    def eval_only(path):
        args = train_net.get_parser().parse_args(
            [
                "--config-file",
                CONFIG,
                "--eval-only",
                *run,
                f"train.init_checkpoint={path}",
                "model.test_score_thresh=0.001",
            ]  # random weights score about the prior, 0.01
        )
        return train_net.main(args)["bbox"]["AP"]

    trained_ap, random_ap = eval_only(weights), eval_only(random_weights)
    assert trained_ap > 30 and random_ap < 5, (trained_ap, random_ap)
    code = train_net.invoke_main(
        ["--config-file", CONFIG, "--eval-only", *run, "train.init_checkpoint=/nonexistent.pth"]
    )
    assert code == 2 and "no such file" in capsys.readouterr().err


def run_demo(args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "demo/demo.py"), *args], capture_output=True, text=True, cwd=REPO
    )


def test_demo_folder_with_a_corrupt_file_video_and_distributions(trained, tmp_path):
    tmp, overrides, _ = trained
    data_overrides = [o for o in overrides if o.startswith(("model.", "dataloader.test"))]
    data_overrides.append("model.test_score_thresh=0.001")  # an untrained model's scores ~ 0.01
    weights = f"train.init_checkpoint={tmp / 'out' / 'model_final.pth'}"
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        src = tmp / "data" / "val" / f"{i:06d}.jpg"
        (folder / f"img{i}.jpg").write_bytes(src.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    res = run_demo(
        [
            "--config-file",
            CONFIG,
            "--input",
            str(folder),
            "--output",
            str(tmp_path / "out"),
            "--show-distributions",
            "--confidence-threshold",
            "0.0",
            *data_overrides,
            weights,
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "skipped" in res.stderr + res.stdout and "broken.jpg" in res.stderr + res.stdout
    written = sorted(os.listdir(tmp_path / "out"))
    assert written == ["img0.png", "img1.png"]
    plain = run_demo(
        [
            "--config-file",
            CONFIG,
            "--input",
            str(folder / "img0.jpg"),
            "--output",
            str(tmp_path / "plain.png"),
            "--confidence-threshold",
            "0.0",
            *data_overrides,
            weights,
        ]
    )
    assert plain.returncode == 0, plain.stderr[-3000:]
    with_dists = cv2.imread(str(tmp_path / "out" / "img0.png"))
    without = cv2.imread(str(tmp_path / "plain.png"))
    assert with_dists.shape == without.shape and with_dists.shape[0] >= 512  # upscaled small image
    assert (with_dists != without).any()  # the distribution panels were drawn

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (128, 128))
    frame = cv2.imread(str(folder / "img0.jpg"))
    for k in range(3):
        writer.write(np.roll(frame, 4 * k, axis=1))
    writer.release()
    res = run_demo(
        [
            "--config-file",
            CONFIG,
            "--video-input",
            str(video),
            "--output",
            str(tmp_path / "clip.mp4"),
            *data_overrides,
            weights,
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    capture = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 3


def test_demo_clear_errors(trained, tmp_path):
    tmp, overrides, _ = trained
    data_overrides = [o for o in overrides if o.startswith(("model.", "dataloader.test"))]
    res = run_demo(
        [
            "--config-file",
            CONFIG,
            "--input",
            str(tmp_path / "nope"),
            *data_overrides,
            f"train.init_checkpoint={tmp / 'out' / 'model_final.pth'}",
        ]
    )
    assert res.returncode == 2 and "no such file" in res.stderr and "Traceback" not in res.stderr
    image = tmp / "data" / "val" / "000000.jpg"
    res = run_demo(
        ["--config-file", CONFIG, "--input", str(image), *data_overrides, "train.init_checkpoint=/missing/model.pth"]
    )
    assert res.returncode == 2 and "no such file" in res.stderr and "Traceback" not in res.stderr


def test_plot_metrics_renders_a_png(tmp_path):
    plot_metrics = load_script("tools/plot_metrics.py", "plot_metrics")
    metrics = tmp_path / "metrics.json"
    with open(metrics, "w") as f:
        for it in range(0, 100, 10):
            f.write(json.dumps({"iteration": it, "total_loss": 2 - it / 100, "loss_qfl": 0.5, "lr": 0.01}) + "\n")
        f.write("not json\n")
        f.write(json.dumps({"iteration": 99, "bbox/AP": 12.5, "bbox/AP50": 30.0}) + "\n")
    out = tmp_path / "curves.png"
    assert plot_metrics.main([str(metrics), "-o", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] > image.shape[0] > 200
    series = plot_metrics.read_metrics(str(metrics))
    assert series["bbox/AP"] == [(99, 12.5)] and len(series["total_loss"]) == 10


def test_demo_webcam_without_a_camera_is_a_clear_message(trained):
    tmp, overrides, _ = trained
    data_overrides = [o for o in overrides if o.startswith(("model.", "dataloader.test"))]
    res = run_demo(
        [
            "--config-file",
            CONFIG,
            "--webcam",
            *data_overrides,
            f"train.init_checkpoint={tmp / 'out' / 'model_final.pth'}",
        ]
    )
    assert res.returncode == 2 and "no camera found" in res.stderr and "Traceback" not in res.stderr


def test_quickstart_main_job_end_to_end(trained, tmp_path, capsys):
    """tools/quickstart.py on the tiny data: trains, evaluates, draws pictures and curves."""
    _, overrides, _ = trained
    quickstart = load_script("tools/quickstart.py", "quickstart")
    out = tmp_path / "qs"
    run_overrides = [o for o in overrides if not o.startswith("train.output_dir")]
    assert (
        quickstart.main(["--pictures", "3", *run_overrides, f"train.output_dir={out}", "model.test_score_thresh=0.001"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "val box AP:" in printed and "pictures:" in printed
    assert sorted(os.listdir(out / "pictures")) == ["000000.png", "000001.png", "000002.png", "overview.png"]
    assert (out / "curves.png").exists() and (out / "model_final.pth").exists()
    summary = json.load(open(out / "quickstart_summary.json"))
    assert 0 <= summary["box_AP"]["bbox/AP"] <= 100


def test_benchmark_script_smoke(tmp_path):
    """tools/benchmark.py runs and reports ratios to FCOS (tiny sizes: a smoke test, not a timing)."""
    res = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools/benchmark.py"),
            "--models",
            "gfl",
            "fcos",
            "--height",
            "64",
            "--width",
            "96",
            "--infer-iters",
            "1",
            "--train-iters",
            "1",
            "--warmup",
            "0",
            "--json",
            str(tmp_path / "bench.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"\|\s*GFL v1\s*\|", res.stdout) and re.search(r"\|\s*D2 FCOS\s*\|", res.stdout)
    assert "1.000x" in res.stdout
    results = json.load(open(tmp_path / "bench.json"))["results"]
    assert results["gfl"]["inference_s"] > 0 and results["fcos"]["train_step_s"] > 0


def test_frontier_without_ultralytics_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    """tools/benchmark.py --mode frontier with a YOLO contender and no .venv-yolo: one line on how
    to install the benchmark-only extra, and no output folder (nothing trained or written)."""
    from gfocal.errors import ConfigError

    monkeypatch.syspath_prepend(os.path.join(REPO, "tools"))  # as when the script runs
    benchmark = load_script("tools/benchmark.py", "benchmark_tool")
    import frontier

    monkeypatch.setattr(frontier, "REPO", str(tmp_path))  # no .venv-yolo there
    out = tmp_path / "frontier"
    try:
        with pytest.raises(ConfigError, match=r"make yolo-env.*AGPL"):
            benchmark.main(["--mode", "frontier", "--contenders", "nano", "yolo11n", "--output-dir", str(out)])
    finally:
        logging.disable(logging.NOTSET)  # the tool quiets logging for its own process
    assert not out.exists()


def test_frontier_student_trains_under_its_teacher_of_the_same_budget_and_after_it(tmp_path, monkeypatch):
    """The LD contender reads the quick-start run of its own budget (its probe: the quick-start
    probe's) and waits for it when it is not there yet; without the teacher's run or the
    quickstart contender it is one line before anything runs; --only-finished trains nothing."""
    from gfocal.errors import ConfigError

    monkeypatch.syspath_prepend(os.path.join(REPO, "tools"))
    import frontier

    out = str(tmp_path / "fr")
    argv = frontier._gfocal_argv("nano_ld", os.path.join(out, "nano_ld_2x"), 10)
    assert f"distill.teacher.weights={os.path.join(out, 'quickstart_2x', 'model_final.pth')}" in argv
    argv = frontier._gfocal_argv("nano_ld", os.path.join(out, "probe", "nano_ld"), 10)
    assert f"distill.teacher.weights={os.path.join(out, 'probe', 'quickstart', 'model_final.pth')}" in argv
    assert not any(a.startswith("distill.") for a in frontier._gfocal_argv("nano", os.path.join(out, "nano_1x"), 10))

    waves = []
    monkeypatch.setattr(frontier, "run_trainings", lambda todo, jobs: waves.append([t[0] for t in todo]))
    todo = [
        ("nano_ld 1x", frontier._gfocal_argv("nano_ld", os.path.join(out, "nano_ld_1x"), 10), ""),
        ("quickstart 1x", frontier._gfocal_argv("quickstart", os.path.join(out, "quickstart_1x"), 10), ""),
        ("nano 1x", frontier._gfocal_argv("nano", os.path.join(out, "nano_1x"), 10), ""),
    ]
    frontier._in_waves(todo, 2)
    assert waves == [["quickstart 1x", "nano 1x"], ["nano_ld 1x"]]
    os.makedirs(os.path.join(out, "quickstart_1x"))
    open(os.path.join(out, "quickstart_1x", "model_final.pth"), "w").close()
    waves.clear()
    frontier._in_waves(todo, 2)  # the teacher is there: the student trains beside the others
    assert waves == [["nano_ld 1x", "quickstart 1x", "nano 1x"], []]

    waves.clear()
    with pytest.raises(ConfigError, match=r"add quickstart to --contenders \(no quickstart_2x in "):
        frontier.train_all(["nano_ld"], [1.0, 2.0], out, 2)
    assert waves == [] and not os.path.isdir(os.path.join(out, "probe"))
    assert frontier.train_all(["nano_ld", "quickstart"], [1.0, 2.0], out, 2, only_finished=True) == {
        ("quickstart", 1.0): os.path.join(out, "quickstart_1x")
    }
    assert waves == []


def test_frontier_probes_the_student_beside_its_reference_and_trains_it_after_its_teacher(tmp_path, monkeypatch):
    """Probes: quick-start and nano first, then the LD student beside a second nano probe, its
    step scaled by nano's first probe over the second; trainings: the teacher before the
    student, whose iterations follow the scaled step. A killed teacher run (a checkpoint, no
    model_final.pth) still holds the student back."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "tools"))
    import frontier

    out = str(tmp_path / "fr")
    step = {"quickstart probe": 0.4, "nano probe": 0.6, "nano_ld probe": 0.8, "nano_ld reference probe": 0.5}
    waves, argvs = [], {}

    def fake_run(todo, jobs):  # a probe leaves its metrics and weights, as train_net would
        waves.append(sorted(t[0] for t in todo))
        for label, argv, run in todo:
            argvs[label] = argv
            os.makedirs(run, exist_ok=True)
            with open(os.path.join(run, "metrics.json"), "w") as f:
                f.writelines(json.dumps({"iteration": i, "time": step.get(label, 1.0)}) + "\n" for i in range(60))
            open(os.path.join(run, "model_final.pth"), "w").close()

    monkeypatch.setattr(frontier, "run_trainings", fake_run)
    frontier.train_all(["nano_ld", "quickstart"], [1.0], out, 2)
    assert waves == [
        ["nano probe", "quickstart probe"],
        ["nano_ld probe", "nano_ld reference probe"],
        ["quickstart 1x"],
        ["nano_ld 1x"],
    ]
    assert "train.max_iter=625" in argvs["nano_ld 1x"]  # 1,500 x 0.4 s / (0.8 x 0.6 / 0.5 s)
    assert "train.max_iter=1500" in argvs["quickstart 1x"]

    # A variant without a teacher: probed after the first probes beside its own reference, and scaled.
    step.update({"quickstart_strong probe": 0.9, "quickstart_strong reference probe": 0.6})
    waves.clear()
    frontier.train_all(["quickstart_strong"], [2.0], out, 2)
    assert [w for w in waves if w] == [
        ["quickstart_strong probe", "quickstart_strong reference probe"],
        ["quickstart_strong 2x"],
    ]
    assert "train.max_iter=2000" in argvs["quickstart_strong 2x"]  # 2 x 1,500 x 0.4 s / (0.9 x 0.4 / 0.6 s)

    waves.clear()
    os.makedirs(os.path.join(out, "quickstart_2x"))
    open(os.path.join(out, "quickstart_2x", "model_0000499.pth"), "w").close()
    todo = [
        (f"{k} 2x", frontier._gfocal_argv(k, os.path.join(out, f"{k}_2x"), 10), "") for k in ("nano_ld", "quickstart")
    ]
    monkeypatch.setattr(frontier, "run_trainings", lambda todo, jobs: waves.append([t[0] for t in todo]))
    frontier._in_waves(todo, 2)
    assert waves == [["quickstart 2x"], ["nano_ld 2x"]]
