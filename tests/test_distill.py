"""Localization Distillation: the loss by hand, the three terms against independent sums, the VLR
on a drawn case, the teacher kept out of everything trained or saved, and LD training end to end
through train_net.py (CPU, seconds)."""

import importlib.util
import json
import math
import os
import statistics
import sys

import pytest
import torch
from gfl_testing import REPO, make_input, small_gfl

from detectron2.config import instantiate
from detectron2.solver import get_default_optimizer_params
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from gfocal.checkpoint import GFLCheckpointer, load_checkpoint_file
from gfocal.data import ShapesSpec, register_shapes
from gfocal.errors import ConfigError, GFocalError
from gfocal.modeling import ATSSMatcher, LocalizationDistiller, fold_distribution, localization_distillation_loss


def reference_ld(pred, target, temperature):
    """T^2 * mean_i p_t,i (log p_t,i - log p_s,i) in plain floats."""

    def softmax(xs):
        exps = [math.exp(x / temperature) for x in xs]
        return [e / sum(exps) for e in exps]

    p_s, p_t = softmax(pred), softmax(target)
    return temperature**2 * sum(t * (math.log(t) - math.log(s)) for s, t in zip(p_s, p_t)) / len(pred)


# ------------------------------------------------------------------------------- the loss
def test_identical_distributions_give_zero_and_others_more():
    logits = torch.randn(6, 4, 17)
    assert localization_distillation_loss(logits, logits.clone()).abs().max() < 1e-6
    assert (localization_distillation_loss(logits, torch.randn(6, 4, 17)) > 0).all()


@pytest.mark.parametrize("temperature", [1.0, 10.0])
def test_loss_by_hand(temperature):
    pred, target = [0.0, 1.0, 2.0, -1.0], [2.0, 0.5, 0.0, 0.0]
    got = localization_distillation_loss(torch.tensor([pred]), torch.tensor([target]), temperature)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(reference_ld(pred, target, temperature), rel=1e-5)
    # Not symmetric: KL(teacher || student), not the other way round.
    assert got.item() != pytest.approx(reference_ld(target, pred, temperature), rel=1e-3)


def test_no_gradient_reaches_the_teacher():
    pred = torch.randn(3, 17, requires_grad=True)
    target = torch.randn(3, 17, requires_grad=True)
    localization_distillation_loss(pred, target).sum().backward()
    assert target.grad is None and pred.grad is not None and pred.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="temperature"):
        localization_distillation_loss(pred, target, temperature=0.5)


# ------------------------------------------------------------------- the terms in training
BOXES = [(10, 12, 70, 60), (80, 20, 150, 110), (30, 70, 60, 120)]


def batch():
    return [make_input(128, 160, BOXES, [0, 1, 2], seed=1), make_input(128, 160, BOXES[:1], [3], seed=2)]


def student_and_teacher(**kwargs):
    """A student whose quality weights are far from the prior's (they sum to well over 1, so that
    a normaliser by their sum would show) and a teacher of other random weights."""
    student, teacher = small_gfl(seed=0), small_gfl(seed=1).eval()
    with torch.no_grad():
        student.head.gfl_cls.bias.fill_(0.5)
    return student.set_distiller(LocalizationDistiller(teacher, **kwargs)), teacher


def independent_terms(student, teacher, inputs, temperature, vlr_alpha=0.25, kd_temperature=2.0):
    """Every quantity of the three LD terms recomputed from the models' parts, float64."""
    with torch.no_grad():
        images = student.preprocess_image(inputs)
        feats, outputs = student.dense_outputs(images.tensor)
        logits, dists = (x.double() for x in student.transposed_outputs(outputs)[:2])
        t_logits, t_dists = (
            x.double() for x in teacher.transposed_outputs(teacher.dense_outputs(images.tensor)[1])[:2]
        )
        anchors = student.anchor_generator(feats)
        gt = [x["instances"] for x in inputs]
        labels, _ = student.label_anchors(anchors, gt)
        vlr = torch.stack([student.anchor_matcher.vlr_region(anchors, g.gt_boxes, None, vlr_alpha) for g in gt])

    def kl(s, t, temp):
        p_s, p_t = (s / temp).log_softmax(-1), (t / temp).log_softmax(-1)
        return temp**2 * (p_t.exp() * (p_t - p_s)).mean(-1)

    n1 = student.reg_max + 1
    pos = torch.stack(labels) != student.num_classes
    side_ld = kl(dists.unflatten(-1, (4, n1)), t_dists.unflatten(-1, (4, n1)), temperature).mean(-1)  # (N, R)
    quality = logits.sigmoid().amax(-1)  # (N, R): v1 weights
    return {
        "ld": (side_ld * quality)[pos].sum(),
        "positives": int(pos.sum()),
        "sum_weights": float(quality[pos].sum()),
        "vlr": (side_ld * vlr).sum() / 4,
        "vlr_count": int((vlr > 0).sum()),
        "kd": kl(logits, t_logits, kd_temperature)[pos].sum() / pos.sum(),
    }


def test_main_region_is_weighted_by_quality_and_divided_by_four_sides_only():
    student, teacher = student_and_teacher()
    inputs = batch()
    with EventStorage():
        losses = student(inputs)
    ref = independent_terms(student, teacher, inputs, temperature=10.0)
    assert ref["positives"] > 3 and ref["sum_weights"] > 2  # a normaliser by either would show
    assert set(losses) == {"loss_qfl", "loss_box", "loss_dfl", "loss_ld"}
    assert losses["loss_ld"].item() == pytest.approx(0.25 * ref["ld"].item(), rel=1e-4)


def test_vlr_and_class_kd_terms():
    student, teacher = student_and_teacher(vlr_weight=0.25, kd_weight=10.0, kd_temperature=2.0)
    inputs = batch()
    with EventStorage():
        losses = student(inputs)
    ref = independent_terms(student, teacher, inputs, temperature=10.0)
    assert ref["vlr_count"] > ref["positives"]
    assert losses["loss_ld_vlr"].item() == pytest.approx(0.25 * ref["vlr"].item(), rel=1e-4)
    assert losses["loss_kd"].item() == pytest.approx(10.0 * ref["kd"].item(), rel=1e-4)
    assert losses["loss_ld"].item() == pytest.approx(0.25 * ref["ld"].item(), rel=1e-4)


def test_no_gt_gives_zero_distillation_and_a_graph():
    student, _ = student_and_teacher(vlr_weight=0.25, kd_weight=1.0)
    with EventStorage():
        losses = student([make_input(96, 96, seed=3)])
    assert all(losses[k].item() == 0 for k in ("loss_ld", "loss_ld_vlr", "loss_kd"))
    sum(losses.values()).backward()  # no error: every term is part of the graph


def test_vlr_region_on_a_drawn_case():
    """One gt, two levels of 8x8 anchors: the region is exactly the anchors whose DIoU with the
    gt lies in [alpha * t, t), t = mean + std of the 9-closest-per-level candidates' IoUs."""
    strides, grid = (8, 16), 8
    per_level = []
    for s in strides:
        centres = [(x * s, y * s) for y in range(grid) for x in range(grid)]
        per_level.append(
            Boxes(torch.tensor([(x - 4 * s, y - 4 * s, x + 4 * s, y + 4 * s) for x, y in centres]).float())
        )
    gt = (20.0, 18.0, 61.0, 50.0)
    all_anchors = [tuple(b) for level in per_level for b in level.tensor.tolist()]

    def iou(a, b):
        inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    def diou(a, b):
        d2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
        c2 = (max(a[2], b[2]) - min(a[0], b[0])) ** 2 + (max(a[3], b[3]) - min(a[1], b[1])) ** 2
        return iou(a, b) - d2 / c2

    gc = ((gt[0] + gt[2]) / 2, (gt[1] + gt[3]) / 2)
    cand = []
    for start in (0, grid * grid):
        level = all_anchors[start : start + grid * grid]
        dist = [math.dist(((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), gc) for a in level]
        cand += [iou(level[i], gt) for i in sorted(range(len(level)), key=dist.__getitem__)[:9]]
    t = statistics.mean(cand) + statistics.stdev(cand)
    expected = [iou(a, gt) if 0.25 * t <= diou(a, gt) < t else 0.0 for a in all_anchors]
    got = ATSSMatcher(topk=9).vlr_region(per_level, Boxes(torch.tensor([gt])), alpha=0.25)
    assert sum(e > 0 for e in expected) >= 5
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=0)


# --------------------------------------------------------------------- the teacher stays out
def test_teacher_is_not_trained_saved_or_optimised(tmp_path):
    student, teacher = student_and_teacher()
    plain = small_gfl(seed=0)
    student.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert student.state_dict().keys() == plain.state_dict().keys()
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in student.parameters()}
    groups = get_default_optimizer_params(student)
    assert not teacher_ids & {id(p) for g in groups for p in g["params"]}
    GFLCheckpointer(student, str(tmp_path)).save("ckpt")
    assert load_checkpoint_file(str(tmp_path / "ckpt.pth"))["model"].keys() == plain.state_dict().keys()
    with EventStorage():
        sum(student(batch()).values()).backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_mismatched_reg_max_or_strides_is_one_clear_error():
    from gfl_testing import small_gfl_cfg

    cfg = small_gfl_cfg()
    cfg.head.reg_max = 8  # a teacher with a shorter distribution than the student's
    with pytest.raises(ConfigError, match=r"reg_max 8, the student .* and 16"):
        small_gfl().set_distiller(LocalizationDistiller(instantiate(cfg).eval()))
    cfg = small_gfl_cfg()
    cfg.anchor_generator.strides = [8, 16, 32, 64, 64]  # the student's 128 is not among them
    with pytest.raises(ConfigError, match=r"strides \[8, 16, 32, 64, 64\]"):
        small_gfl().set_distiller(LocalizationDistiller(instantiate(cfg).eval()))
    cfg = small_gfl_cfg()
    cfg.anchor_generator.offset = 0.5
    with pytest.raises(ConfigError, match=r"anchor offsets 0.5 and 0.0"):
        small_gfl().set_distiller(LocalizationDistiller(instantiate(cfg).eval()))


def test_fold_distribution_by_hand():
    """Bins 0..4 onto 0..2: p0 and p1 stay, p2 + p3 + p4 land on the last bin; per side."""
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5, -0.2] * 2 + [1.0, 1.0, 1.0, 1.0, 1.0] * 2)
    folded = fold_distribution(logits, 4, 2).unflatten(-1, (4, 3)).softmax(-1)
    exps = [math.exp(x) for x in (0.3, -1.0, 2.0, 0.5, -0.2)]
    p = [e / sum(exps) for e in exps]
    assert folded[0].tolist() == pytest.approx([p[0], p[1], p[2] + p[3] + p[4]], rel=1e-6)
    assert folded[1].tolist() == pytest.approx(folded[0].tolist(), rel=1e-6)
    assert folded[2].tolist() == pytest.approx([0.2, 0.2, 0.6], rel=1e-6)
    assert fold_distribution(logits, 4, 4) is logits
    with pytest.raises(ConfigError, match="shorter"):
        fold_distribution(logits, 4, 5)


def p4_p7_student():
    """A student with the levels p4-p7 and reg_max 7 (the small GFL has p3-p7 and 16)."""
    from gfl_testing import small_gfl_cfg

    cfg = small_gfl_cfg()
    cfg.head_in_features = ["p4", "p5", "p6", "p7"]
    cfg.anchor_generator.sizes = [[128], [256], [512], [1024]]
    cfg.anchor_generator.strides = [16, 32, 64, 128]
    cfg.head.input_shape = cfg.head.input_shape[:4]
    cfg.head.reg_max = 7
    torch.manual_seed(0)
    return instantiate(cfg)


def test_a_larger_teacher_teaches_through_its_levels_at_the_students_strides():
    """A student with the levels p4-p7 and reg_max 7 under a p3-p7, reg_max 16 teacher: LD and
    class KD read the teacher's p4-p7 locations (not its first rows), LD with each side's mass
    beyond 7 put on bin 7, against independent sums."""
    student, teacher = p4_p7_student(), small_gfl(seed=1).eval()
    student.set_distiller(LocalizationDistiller(teacher, kd_weight=10.0, kd_temperature=2.0))
    inputs = batch()
    with EventStorage():
        losses = student(inputs)
    with torch.no_grad():
        images = student.preprocess_image(inputs)
        feats, outputs = student.dense_outputs(images.tensor)
        logits, dists = (x.double() for x in student.transposed_outputs(outputs)[:2])
        t_out = teacher.dense_outputs(images.tensor)[1]
        t_logits, t_dists = (
            torch.cat([x.permute(0, 2, 3, 1).flatten(1, 2) for x in per_level[1:]], 1).double()  # p4-p7
            for per_level in (t_out.cls_logits, t_out.dist_logits)
        )
        labels, _ = student.label_anchors(student.anchor_generator(feats), [x["instances"] for x in inputs])
    pos = torch.stack(labels) != student.num_classes
    assert int(pos.sum()) > 3
    t_probs = t_dists.unflatten(-1, (4, 17)).softmax(-1)
    t_probs = torch.cat([t_probs[..., :7], t_probs[..., 7:].sum(-1, keepdim=True)], -1)
    p_s = (dists.unflatten(-1, (4, 8)) / 10).log_softmax(-1)
    p_t = t_probs ** (1 / 10)
    p_t = p_t / p_t.sum(-1, keepdim=True)
    side_ld = (100 * (p_t * (p_t.log() - p_s)).mean(-1)).mean(-1)
    quality = logits.sigmoid().amax(-1)
    assert losses["loss_ld"].item() == pytest.approx(0.25 * (side_ld * quality)[pos].sum().item(), rel=1e-4)
    k_s, k_t = (logits / 2).log_softmax(-1), (t_logits / 2).log_softmax(-1)
    kd = 4 * (k_t.exp() * (k_t - k_s)).mean(-1)
    assert losses["loss_kd"].item() == pytest.approx(10.0 * (kd[pos].sum() / pos.sum()).item(), rel=1e-4)


def test_a_teacher_with_other_feature_sizes_is_one_clear_error(monkeypatch):
    """The teacher's p5 one column narrower than the student's: an error, not rows misread."""
    student, teacher = p4_p7_student(), small_gfl(seed=1).eval()
    student.set_distiller(LocalizationDistiller(teacher))
    dense = teacher.dense_outputs

    def cropped(x):
        feats, out = dense(x)
        narrower = [None if v is None else [t[..., :-1] if i == 2 else t for i, t in enumerate(v)] for v in out]
        return feats, type(out)(*narrower)

    monkeypatch.setattr(teacher, "dense_outputs", cropped)
    with EventStorage(), pytest.raises(ConfigError, match="locations at the student's strides .* differ in size"):
        student(batch())


# ---------------------------------------------------------------------- end to end, train_net
TINY = [
    "dataloader.train.dataset.names=ld_shapes_train",
    "dataloader.test.dataset.names=ld_shapes_val",
    "dataloader.train.total_batch_size=4",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "train.checkpointer.period=2",
    "train.log_period=1",
    "train.eval_period=0",
]


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory):
    """A tiny shapes dataset and a (random) quick-start teacher checkpoint."""
    tmp = tmp_path_factory.mktemp("ld")
    register_shapes("ld_shapes", ShapesSpec(num_train=16, num_val=4, seed=4), str(tmp / "data"))
    from gfocal.config import load_config

    teacher = instantiate(load_config(os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")).model)
    torch.save({"model": teacher.state_dict()}, tmp / "teacher.pth")
    return tmp


def train_net():
    spec = importlib.util.spec_from_file_location("train_net_ld", os.path.join(REPO, "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ld_training_runs_resumes_and_saves_only_the_student(teacher_weights, capsys):
    out = teacher_weights / "out"
    config = os.path.join(REPO, "configs/Quickstart/ld_full_shapes.py")
    overrides = [*TINY, f"distill.teacher.weights={teacher_weights / 'teacher.pth'}", f"train.output_dir={out}"]
    assert train_net().invoke_main(["--config-file", config, *overrides, "train.max_iter=3"]) == 0
    records = [json.loads(line) for line in open(out / "metrics.json")]
    trained = [r for r in records if "loss_ld" in r]
    assert len(trained) == 3 and all(
        math.isfinite(r[k]) for r in trained for k in ("loss_ld", "loss_ld_vlr", "loss_kd")
    )
    student = instantiate(train_net().load_config(config).model)
    saved = load_checkpoint_file(str(out / "model_final.pth"))["model"]
    assert saved.keys() == student.state_dict().keys()
    # --resume rebuilds the teacher from its weights and continues at the next iteration.
    assert train_net().invoke_main(["--config-file", config, "--resume", *overrides, "train.max_iter=5"]) == 0
    records = [json.loads(line) for line in open(out / "metrics.json")]
    assert [r["iteration"] for r in records if "loss_ld" in r][-2:] == [3, 4]


def test_nano_learns_from_the_quick_start_model(teacher_weights):
    """configs/Quickstart/ld_nano_shapes.py: GFocal-Nano (strides 8-64, reg_max 7, LCNet + PAN)
    under the quick-start model (strides 8-128, reg_max 16, ResNet + FPN) trains with a finite,
    non-zero LD term, and saves the nano model alone."""
    out = teacher_weights / "nano"
    config = os.path.join(REPO, "configs/Quickstart/ld_nano_shapes.py")
    overrides = [*TINY, f"distill.teacher.weights={teacher_weights / 'teacher.pth'}", f"train.output_dir={out}"]
    assert train_net().invoke_main(["--config-file", config, *overrides, "train.max_iter=2"]) == 0
    trained = [json.loads(line) for line in open(out / "metrics.json") if "loss_ld" in line]
    assert len(trained) == 2 and all(math.isfinite(r["loss_ld"]) and r["loss_ld"] > 0 for r in trained)
    saved = load_checkpoint_file(str(out / "model_final.pth"))["model"]
    assert saved.keys() == instantiate(train_net().load_config(config).model).state_dict().keys()


def test_missing_or_mismatched_teacher_is_one_line(teacher_weights, capsys):
    """A teacher's weights that are not there: one line before anything is written; a teacher
    with a shorter distribution than the student: one line naming both."""
    config = os.path.join(REPO, "configs/Quickstart/ld_shapes.py")
    base = ["--config-file", config, *TINY, "train.max_iter=1"]
    out = teacher_weights / "o1"
    assert train_net().invoke_main([*base, f"train.output_dir={out}", "distill.teacher.weights=nope.pth"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nope.pth" in errors[0] and "train that model first" in errors[0]
    assert not out.exists()
    weights = f"distill.teacher.weights={teacher_weights / 'teacher.pth'}"
    out = teacher_weights / "o2"
    assert train_net().invoke_main([*base, f"train.output_dir={out}", "model.head.reg_max=20", weights]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "reg_max 16, the student" in errors[0] and "and 20" in errors[0], errors


def test_ld_configs_mirror_the_published_ones():
    from detectron2.config import LazyConfig

    from gfocal.model_zoo import DISTILLED, MODELS

    r101, dcn = "COCO-Detection/gfl_R_101_FPN_ms2x.py", "COCO-Detection/gfl_R_101_DCN_FPN_ms2x.py"
    published = [
        ("ld_gfl_R_18_FPN_1x", 18, r101),
        ("ld_gfl_R_34_FPN_1x", 34, r101),
        ("ld_gfl_R_50_FPN_1x", 50, r101),
        ("ld_gfl_R_101_FPN_ms2x", 101, dcn),
    ]
    # The model zoo table lists every LD config, with the published AP (a gain over the student alone).
    on_disk = {f"COCO-Detection/{f}" for f in os.listdir(os.path.join(REPO, "configs/COCO-Detection"))}
    assert (
        set(DISTILLED)
        == {f"COCO-Detection/{name}.py" for name, _, _ in published}
        == {f for f in on_disk if f.split("/")[1].startswith("ld_")}
    )
    assert all(e.student_ap < e.ld_ap <= (e.full_recipe_ap or e.ld_ap) for e in DISTILLED.values())
    for name, depth, teacher in published:
        cfg = LazyConfig.load(os.path.join(REPO, f"configs/COCO-Detection/{name}.py"))
        d = cfg.distill
        assert cfg.model.backbone.bottom_up.stages.depth == depth and not cfg.model.head.use_dgqp
        assert (d.teacher.config_file, d.teacher.weights) == (teacher, MODELS[teacher].url)
        assert (d.ld_weight, d.ld_temperature) == (0.25, 10.0) and "vlr_weight" not in d and "kd_weight" not in d
        assert cfg.train.max_iter == (90000 if depth < 101 else 180000)
    full = LazyConfig.load(os.path.join(REPO, "configs/Quickstart/ld_full_shapes.py")).distill
    assert (full.vlr_weight, full.vlr_temperature, full.vlr_alpha, full.kd_weight, full.kd_temperature) == (
        0.25,
        10.0,
        0.25,
        10.0,
        2.0,
    )


def test_distill_quickstart_without_a_teacher_says_run_make_quickstart(monkeypatch, capsys):
    from gfocal.cli import run

    spec = importlib.util.spec_from_file_location("distill_qs", os.path.join(REPO, "tools/distill_quickstart.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(tool, "TEACHER", (tool.TEACHER[0], "output/no_such_teacher/model_final.pth"))
    assert run(lambda: tool.main(["--seeds", "0"]), []) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "make quickstart" in errors[0] and "no_such_teacher" in errors[0]
    assert run(lambda: tool.main(["--jobs", "0"]), []) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--jobs must be at least 1, got 0" in errors[0]


def test_run_trainings_runs_two_at_a_time_and_names_each_failure(tmp_path, capfd):
    from gfocal.engine import run_trainings

    # Each fake training records how many ran beside it and its thread budget, then exits with its code.
    script = (
        "import os, sys, time, glob\n"
        "out, code = sys.argv[1], int(sys.argv[2])\n"
        "print('console of', os.path.basename(out), flush=True)\n"
        "open(os.path.join(out, 'running'), 'w').close()\n"
        "time.sleep(1.5)\n"
        "seen = len(glob.glob(os.path.join(os.path.dirname(out), '*', 'running')))\n"
        "open(os.path.join(out, 'seen'), 'w').write(f\"{seen} {os.environ['OMP_NUM_THREADS']}\")\n"
        "time.sleep(0.5)\n"
        "os.remove(os.path.join(out, 'running'))\n"
        "sys.exit(code)\n"
    )
    todo = [
        (f"run {i}", [sys.executable, "-c", script, str(tmp_path / f"r{i}"), str(code)], str(tmp_path / f"r{i}"))
        for i, code in enumerate([0, 3, 0])
    ]
    with pytest.raises(GFocalError) as info:
        run_trainings(todo, jobs=2, poll_s=0.1)
    message = str(info.value)
    assert "run 1 (exit 3" in message and "run 0" not in message and "run 2" not in message
    seen = [(tmp_path / f"r{i}" / "seen").read_text().split() for i in range(3)]
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert [s[1] for s in seen] == [threads] * 3  # every run, the failed one's successor included
    assert int(seen[0][0]) == 2 and max(int(s[0]) for s in seen) == 2  # two at a time, never three
    assert [(tmp_path / f"r{i}" / "console.txt").read_text() for i in range(3)] == [
        f"console of r{i}\n" for i in range(3)
    ]
    capfd.readouterr()
    run_trainings(todo[:1], jobs=1, poll_s=0.1)  # one at a time: no error, console on the terminal
    assert "console of r0" in capfd.readouterr().out
    assert (tmp_path / "r0" / "console.txt").read_text() == "console of r0\n"


def test_train_unless_finished_skips_finished_runs_and_saves_lazy_configs(tmp_path):
    """A run with model_final.pth is not trained again; the others run `train_net --resume
    --config-file CFG *args *overrides`, a lazy config saved beside its output first."""
    from omegaconf import OmegaConf

    from gfocal.engine import TrainingRun, train_unless_finished

    fake = tmp_path / "fake_train_net.py"  # records its argv in the run's folder (the last argument)
    fake.write_text(
        "import json, os, sys\njson.dump(sys.argv[1:], open(os.path.join(sys.argv[-1], 'argv.json'), 'w'))\n"
    )
    done, file_run, lazy_run = (str(tmp_path / name) for name in ("done", "file", "lazy"))
    os.makedirs(done)
    open(os.path.join(done, "model_final.pth"), "w").close()
    runs = [
        TrainingRun("done", done, "a.py"),
        TrainingRun("file", file_run, "b.py", overrides=["train.seed=1", file_run], args=["--num-gpus", "1"]),
        TrainingRun("lazy", lazy_run, OmegaConf.create({"train": {"max_iter": 3}}), overrides=[lazy_run]),
    ]
    weights = train_unless_finished(runs, str(fake), jobs=1)
    assert weights == [os.path.join(d, "model_final.pth") for d in (done, file_run, lazy_run)]
    assert not os.path.exists(os.path.join(done, "argv.json"))
    argv = json.load(open(os.path.join(file_run, "argv.json")))
    assert argv == ["--resume", "--config-file", "b.py", "--num-gpus", "1", "train.seed=1", file_run]
    saved = os.path.join(lazy_run, "run_config.yaml")
    assert json.load(open(os.path.join(lazy_run, "argv.json"))) == ["--resume", "--config-file", saved, lazy_run]
    assert OmegaConf.load(saved).train.max_iter == 3
    with pytest.raises(ConfigError, match="lambda: its config cannot be saved as yaml"):
        train_unless_finished([TrainingRun("lambda", str(tmp_path / "lambda"), {"f": lambda: 0})], str(fake))


def test_distill_quickstart_table_times_the_student_as_its_first_run_was_configured(tmp_path, monkeypatch, capsys):
    """Finished runs are reused, and the speed step builds the student from the config (and the
    overrides) of the first run asked for: an LD-only override (``distill.ld_weight``) once broke
    it on the plain student's config, after the trainings."""
    from gfocal.engine import train_loop

    spec = importlib.util.spec_from_file_location("distill_qs", os.path.join(REPO, "tools/distill_quickstart.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    teacher = tmp_path / "teacher.pth"
    teacher.write_bytes(b"")
    monkeypatch.setattr(tool, "TEACHER", (tool.TEACHER[0], str(teacher)))
    for seed, ap in [(0, 50.0), (1, 52.0)]:  # two finished LD runs
        run_dir = tmp_path / f"ld_seed{seed}"
        run_dir.mkdir()
        (run_dir / "model_final.pth").write_bytes(b"")
        record = {"iteration": 99, **{f"bbox/{k}": ap + i for i, k in enumerate(tool.METRICS)}}
        (run_dir / "metrics.json").write_text(json.dumps(record) + "\n")
        (run_dir / "log.txt").write_text("Total training time: 0:12:30 (0:00:01 on hooks)\n")
    built = []

    def fake_paths(config, weights, export_dir, overrides=()):
        tool.load_config(os.path.join(REPO, config), overrides)  # as the real one: overrides must apply
        built.append((config, weights, list(overrides)))
        return {}

    trained = []
    monkeypatch.setattr(train_loop, "run_trainings", lambda todo, jobs, **kwargs: trained.extend(todo))
    monkeypatch.setattr(tool, "inference_paths", fake_paths)
    monkeypatch.setattr(tool.DatasetCatalog, "get", lambda name: [{"file_name": "x.png"}])
    monkeypatch.setattr(tool.cv2, "imread", lambda path: None)
    times = {"student": {p: 5.0 for p in tool.SPEED_PATHS}, "teacher": {p: 10.0 for p in tool.SPEED_PATHS}}
    monkeypatch.setattr(tool, "time_side_by_side", lambda models, images: times)
    args = ["--runs", "ld", "--seeds", "0", "1", "--output-root", str(tmp_path), "distill.ld_weight=0.03125"]
    assert tool.main(args) == 0
    assert trained == []  # both runs had finished
    assert built == [
        (tool.RUNS["ld"][1], str(tmp_path / "ld_seed0" / "model_final.pth"), ["distill.ld_weight=0.03125"]),
        (tool.TEACHER[0], str(teacher), []),
    ]
    out = capsys.readouterr().out
    assert "| LD (main region)" in out and "50.0 / 52.0" in out and "12.5 / 12.5" in out
    assert out.count("2.00x") == len(tool.SPEED_PATHS)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [m["AP"] for m in results["ld"]] == [50.0, 52.0] and results["speed_ms"] == times


def test_ld_weights_scale_from_the_published_two_images_per_worker():
    """Main-region and VLR LD are sums over a worker's images: at 16 images per worker the
    published weights (2 per GPU) are divided by 8; class KD (a mean over positives) is not."""
    spec = importlib.util.spec_from_file_location("ld_config", os.path.join(REPO, "configs/common/ld.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.ld
    published = ld("Quickstart/gfl_shapes.py", "t.pth", full_recipe=True)
    scaled = ld("Quickstart/gfl_shapes.py", "t.pth", full_recipe=True, images_per_worker=16)
    assert (published.ld_weight, published.vlr_weight, published.kd_weight) == (0.25, 0.25, 10.0)
    assert (scaled.ld_weight, scaled.vlr_weight, scaled.kd_weight) == (0.25 / 8, 0.25 / 8, 10.0)
    assert (scaled.ld_temperature, scaled.vlr_temperature, scaled.kd_temperature) == (10.0, 10.0, 2.0)
