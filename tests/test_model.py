"""End-to-end behaviour of the GFL meta-architecture on small generated inputs (CPU)."""

import math

import pytest
import torch
from gfl_testing import make_input, small_gfl

from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import pairwise_iou
from detectron2.utils.events import EventStorage

ODD_SIZES = [(200, 250), (200, 249)]


def train_losses(model, inputs):
    model.train()
    with EventStorage() as storage:
        losses = model(inputs)
    return losses, storage


def test_registered_in_detectron2():
    from gfocal.modeling import GFL

    assert META_ARCH_REGISTRY.get("GFL") is GFL


@pytest.mark.parametrize("use_dgqp", [False, True])
def test_losses_full_half_empty_and_empty_gt(use_dgqp):
    model = small_gfl(use_dgqp)
    full = [
        make_input(h, w, [(20, 30, 120, 150), (100, 40, 180, 110)], [1, 3], seed=i)
        for i, (h, w) in enumerate(ODD_SIZES)
    ]
    half = [full[0], make_input(*ODD_SIZES[1])]
    empty = [make_input(h, w) for h, w in ODD_SIZES]

    losses, storage = train_losses(model, full)
    assert set(losses) == {"loss_qfl", "loss_box", "loss_dfl"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert storage.history("gfl/num_pos_per_image").latest() > 0

    losses, _ = train_losses(model, half)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())

    losses, storage = train_losses(model, empty)
    assert losses["loss_box"] == 0 and losses["loss_dfl"] == 0
    assert torch.isfinite(losses["loss_qfl"]) and losses["loss_qfl"] > 0
    assert storage.history("gfl/num_pos_per_image").latest() == 0
    sum(losses.values()).backward()  # still differentiable with no positive


@pytest.mark.parametrize("use_dgqp", [False, True])
def test_every_trainable_parameter_gets_a_gradient(use_dgqp):
    model = small_gfl(use_dgqp)
    inputs = [
        make_input(h, w, [(20, 30, 120, 150), (100, 40, 180, 110)], [1, 3], seed=i)
        for i, (h, w) in enumerate(ODD_SIZES)
    ]
    losses, _ = train_losses(model, inputs)
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith("head.reg_conf") for n, _ in trainable) == use_dgqp
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    zero = {n for n, p in trainable if p.grad.abs().sum() == 0}
    # A level's Scale only reaches the loss through that level's positives; these gts (<= 120
    # px) are matched on the finer levels only, so the coarse levels' scales get exact zeros.
    assert zero <= {f"head.scales.{i}.scale" for i in range(2, 5)}, zero
    assert model.head.scales[0].scale.grad != 0


def patch_head(model, fill):
    """Replace the head's outputs (same shapes) with ``fill(outputs)``."""
    original = model.head.forward

    def forward(features):
        return fill(original(features))

    model.head.forward = forward


def test_padding_anchors_get_no_loss():
    """Two empty images, 96x96 and 96x200, padded to a 96x224 batch, with constant head
    outputs (logit 0): every counted anchor loses K * 0.25 * log 2. The 96x96 image's own
    extent holds 12*12 + 6*6 + 3*3 + 2*2 + 1*1 = 194 anchors, the batch 12*28 + 6*14 + 3*7 +
    2*4 + 1*2 = 451 per image; the QFL normaliser counts each empty image as 1."""
    model = small_gfl()
    patch_head(model, lambda outs: type(outs)(*(o and [torch.zeros_like(x) for x in o] for o in outs)))
    inputs = [make_input(96, 96), make_input(96, 200)]
    per_anchor = model.num_classes * 0.25 * math.log(2.0)
    assert model.ignore_padding_anchors  # the reference behaviour is the default
    losses, _ = train_losses(model, inputs)
    torch.testing.assert_close(losses["loss_qfl"], torch.tensor((194 + 451) * per_anchor / 2))
    model.ignore_padding_anchors = False
    losses, _ = train_losses(model, inputs)
    torch.testing.assert_close(losses["loss_qfl"], torch.tensor(2 * 451 * per_anchor / 2))


def run_inference(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(inputs)


@pytest.mark.parametrize("use_dgqp", [False, True])
def test_decoded_box_in_input_image_coordinates(use_dgqp):
    """One confident location at stride 8, grid (y=5, x=6), class 2, with side distributions
    peaked at bins (left, top, right, bottom) = (1, 2, 3, 4): box [48-8, 40-16, 48+24, 40+32]
    in network-input pixels; the input was resized by 1/2, so the output doubles it. For GFLv2
    the DGQP quality is 0.5 everywhere."""
    model = small_gfl(use_dgqp)
    n = model.reg_max

    def fill(outputs):
        logits, dists, quality = outputs
        new_logits = [torch.full_like(x, -20.0) for x in logits]
        new_dists = [torch.zeros_like(x) for x in dists]
        new_logits[0][0, 2, 5, 6] = 10.0
        for side, b in enumerate([1, 2, 3, 4]):
            new_dists[0][0, side * (n + 1) + b, 5, 6] = 30.0  # side-major channels
        return type(outputs)(new_logits, new_dists, quality and [torch.full_like(q, 0.5) for q in quality])

    patch_head(model, fill)
    inp = make_input(100, 120)
    inp["height"], inp["width"] = 200, 240
    inst = run_inference(model, [inp])[0]["instances"]
    assert len(inst) == 1 and inst.image_size == (200, 240)
    torch.testing.assert_close(inst.pred_boxes.tensor, torch.tensor([[80.0, 48.0, 144.0, 144.0]]))
    assert inst.pred_classes.tolist() == [2]
    # GFLv2's score is the class probability times the DGQP quality.
    quality = 0.5 if use_dgqp else 1.0
    torch.testing.assert_close(inst.scores, torch.sigmoid(torch.tensor([10.0])) * quality)
    assert inst.pred_dists.shape == (1, 4, n + 1)
    assert inst.pred_dists[0].argmax(dim=1).tolist() == [1, 2, 3, 4]
    torch.testing.assert_close(inst.pred_strides, torch.tensor([16.0]))


def test_inference_survives_inf_and_nan_outputs():
    model = small_gfl()

    def fill(outputs):
        logits, dists, _ = outputs
        logits = [x.clone() for x in logits]
        dists = [x.clone() for x in dists]
        logits[0][..., :3] = float("inf")
        logits[1][..., :3] = float("nan")
        dists[0][..., :2] = float("nan")
        dists[1][..., :2] = float("inf")
        dists[2][:] = -float("inf")
        return outputs._replace(cls_logits=logits, dist_logits=dists)

    patch_head(model, fill)
    out = run_inference(model, [make_input(*s) for s in ODD_SIZES])
    for o, (h, w) in zip(out, ODD_SIZES):
        inst = o["instances"]
        assert inst.image_size == (h, w)
        assert len(inst) <= 100
        assert torch.isfinite(inst.pred_boxes.tensor).all()


def overfit(use_dgqp, steps):
    model = small_gfl(use_dgqp, seed=1)
    model.backbone.bottom_up.freeze(0)
    boxes, classes = [(16, 24, 80, 100), (88, 40, 150, 90)], [1, 3]
    inp = make_input(128, 160, boxes, classes, seed=5)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    for _ in range(steps):
        losses, _ = train_losses(model, [inp])
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    inst = run_inference(model, [inp])[0]["instances"]
    return history, inst, boxes, classes


@pytest.mark.parametrize("use_dgqp", [False, True])
def test_overfits_one_image(use_dgqp):
    history, inst, boxes, classes = overfit(use_dgqp, steps=60)
    assert sum(history[-5:]) / 5 < 0.3 * sum(history[:5]) / 5
    top = inst[inst.scores > 0.3]
    assert len(top) >= 2
    iou = pairwise_iou(top.pred_boxes, type(top.pred_boxes)(torch.tensor(boxes, dtype=torch.float32)))
    best_iou, best_gt = iou.max(dim=0)  # the best detection for each gt
    assert (best_iou > 0.7).all(), iou
    for g, c in enumerate(classes):
        det = iou[:, g].argmax()
        assert top.pred_classes[det].item() == c


def test_padding_locations_give_no_candidates_in_a_padded_batch():
    """A 96x96 image batched with a 96x200 one is padded to 96x224. With head outputs that
    depend only on the location (so a location scores the same alone and in the batch), the
    small image's detections in the batch are exactly its detections alone: the locations in
    the batch padding take none of its 100 slots (the reference lets them, and they are then
    dropped as empty boxes, leaving fewer real detections)."""
    model = small_gfl()
    gen = torch.Generator().manual_seed(0)
    tables = [torch.randn(model.num_classes + 4 * (model.reg_max + 1), 32, 32, generator=gen) for _ in range(5)]

    def fill(outputs):
        new_logits, new_dists = [], []
        for table, x in zip(tables, outputs.cls_logits):
            h, w = x.shape[-2:]
            t = table[:, :h, :w].expand(x.shape[0], -1, -1, -1)
            new_logits.append(t[:, : model.num_classes] * 2)
            new_dists.append(t[:, model.num_classes :] * 3)
        return outputs._replace(cls_logits=new_logits, dist_logits=new_dists)

    patch_head(model, fill)
    model.test_score_thresh = 0.0
    small, wide = make_input(96, 96, seed=1), make_input(96, 200, seed=2)
    alone = run_inference(model, [small])[0]["instances"]
    batched = run_inference(model, [small, wide])[0]["instances"]
    assert len(alone) > 20
    assert len(batched) == len(alone)
    torch.testing.assert_close(batched.pred_boxes.tensor, alone.pred_boxes.tensor)
    torch.testing.assert_close(batched.scores, alone.scores)
    assert torch.equal(batched.pred_classes, alone.pred_classes)
