"""tools/find_label_errors.py end to end (gfocal.label_check.pipeline): its outputs, --apply,
out-of-fold training, bad input; and the evidence a real GFL gives (gfocal.label_check.evidence)."""

import glob
import hashlib
import json
import os

import numpy as np
import pytest
import torch
from gfl_testing import small_gfl
from label_testing import CONFIG, patch_evidence, random_weights, run_tool, write_drawn_dataset

from gfocal.data import ShapesSpec, register_shapes
from gfocal.label_check import apply_issues, collect_evidence, pipeline
from gfocal.label_check.evidence import dense_evidence, mirror_evidence


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    root = tmp_path_factory.mktemp("drawn")
    return (root, *write_drawn_dataset(str(root)), random_weights(str(root / "random.pth")))


@pytest.fixture(scope="module")
def checked(drawn):
    """One run of the tool (scoring patched to the drawn evidence) on the noisy json."""
    root, _, noisy_json, images, clean, noisy, changes, weights = drawn
    mp = pytest.MonkeyPatch()
    patch_evidence(mp, clean)
    out = str(root / "check")
    digest = hashlib.sha256(open(noisy_json, "rb").read()).hexdigest()
    code = run_tool(
        ["--config-file", CONFIG, "--json", noisy_json, "--image-root", images, "--output", out, "--weights", weights],
    )
    mp.undo()
    assert code == 0
    assert hashlib.sha256(open(noisy_json, "rb").read()).hexdigest() == digest  # the input is never touched
    return out


def _load(out, name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def test_outputs_rank_issues_and_apply_the_flagged_ones(drawn, checked):
    _, _, _, _, clean, noisy, changes, _ = drawn
    out = checked
    issues = _load(out, "label_issues.json")
    scores = [x["score"] for x in issues]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert {x["type"] for x in issues if x["flagged"]} == {"location", "class", "missing", "spurious", "duplicate"}
    for x in issues:
        assert {
            "type",
            "score",
            "image_id",
            "file_name",
            "annotation_id",
            "category_id",
            "bbox",
            "suggested_bbox",
            "suggested_category_id",
        } <= set(x)
        assert not os.path.isabs(x["file_name"])
        if x["type"] == "location":
            assert set(x["sides"]) == {"left", "top", "right", "bottom"}
            assert set(x["sides"]["left"]) >= {"annotated", "suggested", "p_annotated"}
        if x["type"] == "missing":
            assert x["annotation_id"] is None and x["bbox"] is None
    corrected = _load(out, "corrected.json")
    assert corrected == json.loads(json.dumps(apply_issues(noisy, [x for x in issues if x["flagged"]])))
    predictions = _load(out, "predictions.json")
    assert predictions and set(predictions[0]) >= {"image_id", "category_id", "bbox", "score"}
    # The drawn evidence has one detection per clean object, its box within ~0.5 px: in COCO
    # results format (XYWH, the dataset's category ids), each clean box is a prediction.
    assert len(predictions) == len(clean["annotations"])
    for a in clean["annotations"]:
        mine = [p for p in predictions if p["image_id"] == a["image_id"] and p["category_id"] == a["category_id"]]
        assert np.abs(np.array([p["bbox"] for p in mine]) - a["bbox"]).max(axis=1).min() < 3.0
    summary = _load(out, "run.json")
    assert summary["mode"] == "weights" and summary["images"] == len(noisy["images"])
    assert summary["scales"] == [1.0]  # the quick look: one size
    assert not glob.glob(os.path.join(out, ".staging*")) and not glob.glob(os.path.join(out, "*.tmp*"))
    cards = open(os.path.join(out, "index.html")).read().count('class="card"')
    assert cards == sum(1 for x in issues if x["flagged"]) == len(os.listdir(os.path.join(out, "images")))


def _decisions(out, choices):
    issues_sha = hashlib.sha256(open(os.path.join(out, "label_issues.json"), "rb").read()).hexdigest()
    return {"format": "gfocal-label-decisions", "version": 1, "issues_sha256": issues_sha, "decisions": choices}


def test_apply_with_every_flagged_issue_accepted_round_trips(checked, tmp_path):
    out = checked
    issues = _load(out, "label_issues.json")
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(_decisions(out, {x["id"]: "accept" for x in issues if x["flagged"]})))
    assert run_tool(["--apply", str(path), "--output", out]) == 0
    assert _load(out, "corrected_reviewed.json") == _load(out, "corrected.json")
    # Rejecting one location issue keeps that box as annotated.
    first = next(x for x in issues if x["flagged"] and x["type"] == "location")
    choices = {x["id"]: "accept" for x in issues if x["flagged"]}
    choices[first["id"]] = "reject"
    path.write_text(json.dumps(_decisions(out, choices)))
    assert run_tool(["--apply", str(path), "--output", out]) == 0
    reviewed = {a["id"]: a for a in _load(out, "corrected_reviewed.json")["annotations"]}
    assert reviewed[first["annotation_id"]]["bbox"] == first["bbox"]


def _error(capsys, argv):
    code = run_tool(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_decisions_are_one_line_errors(checked, tmp_path, capsys):
    out = checked
    path = tmp_path / "d.json"
    cases = [
        ({"decisions": {}}, "not a decisions file"),
        ({**_decisions(out, {}), "issues_sha256": "0" * 64}, "another label check"),
        (_decisions(out, {"location-999999": "accept"}), "unknown issue ids"),
        (_decisions(out, {_load(out, "label_issues.json")[0]["id"]: "maybe"}), "'accept' or 'reject'"),
    ]
    before = sorted(os.listdir(out))
    for content, message in cases:
        path.write_text(json.dumps(content))
        code, err = _error(capsys, ["--apply", str(path), "--output", out])
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
    path.write_text("{not json")
    code, err = _error(capsys, ["--apply", str(path), "--output", out])
    assert code == 2 and "cannot read" in err
    code, err = _error(capsys, ["--apply", str(path), "--output", str(tmp_path / "nothing")])
    assert code == 2 and "holds no label check" in err
    assert sorted(os.listdir(out)) == before


def test_bad_datasets_and_arguments_are_one_line_errors(drawn, tmp_path, capsys):
    root, _, noisy_json, images, _, noisy, _, weights = drawn
    base = ["--config-file", CONFIG, "--image-root", images, "--weights", weights]

    def with_json(data, name):
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)

    def changed(fn):
        data = json.loads(json.dumps(noisy))
        fn(data)
        return data

    first = noisy["annotations"][0]
    cases = [
        (with_json("[1, 2", "broken.json"), "cannot read"),
        (with_json({"images": []}, "notcoco.json"), "not a COCO detection json"),
        (with_json({"images": [], "annotations": [], "categories": [{"id": 1}]}, "empty.json"), "has no images"),
        (
            with_json(changed(lambda d: d["annotations"][3].update(category_id=77)), "cat.json"),
            "category_id 77 is not among",
        ),
        (
            with_json(changed(lambda d: d["annotations"][4].update(id=first["id"])), "dupid.json"),
            "duplicate annotation id",
        ),
        (
            with_json(changed(lambda d: d["annotations"][5].update(bbox=[130, 20, 40, 40])), "out.json"),
            "outside its image",
        ),
        (with_json(changed(lambda d: d["annotations"][5].update(bbox=[1, 2, 0, 4])), "zero.json"), "w, h > 0"),
        (with_json(changed(lambda d: d.update(annotations=[])), "noann.json"), "has no annotations"),
    ]
    # Boxes as training checks them (gfocal.data.checks): one partly outside is kept (and clipped
    # when a fold trains on it), one entirely outside is an error.
    partly = with_json(changed(lambda d: d["annotations"][5].update(bbox=[120, 120, 40, 40])), "partly.json")
    assert pipeline.read_coco(partly)["annotations"][5]["bbox"] == [120, 120, 40, 40]
    for path, message in cases:
        code, err = _error(capsys, [*base, "--json", path, "--output", str(tmp_path / "o")])
        assert code == 2 and message in err and len(err.splitlines()) == 1, (message, err)
    assert not os.path.exists(tmp_path / "o")  # nothing written for bad input
    other = random_weights(str(tmp_path / "three.pth"), num_classes=3)
    argv = [
        "--config-file",
        CONFIG,
        "--image-root",
        images,
        "--json",
        noisy_json,
        "--output",
        str(tmp_path / "o"),
        "--weights",
        other,
    ]
    code, err = _error(capsys, argv)
    assert code == 2 and "classes" in err and len(err.splitlines()) == 1, err
    for argv, message in [
        ([*base, "--output", "x"], "either --json"),
        ([*base, "--json", noisy_json, "--output", "x", "--threshold", "1.5"], "--threshold must be in (0, 1)"),
        (
            ["--config-file", CONFIG, "--json", noisy_json, "--image-root", images, "--output", "x", "--folds", "1"],
            "--folds must be at least 2",
        ),
        ([*base[:2], "--json", noisy_json, "--image-root", "/nonexistent", "--output", "x"], "no such folder"),
        ([*base, "--json", noisy_json, "--output", "x", "--bogus"], "unrecognized arguments"),
        ([*base, "--json", noisy_json, "--output", "x", "--scales", "1,abc"], "--scales must be"),
        ([*base, "--json", noisy_json, "--output", "x", "--scales", "0,1"], "--scales must be"),
        ([*base, "--json", noisy_json, "--output", "x", "--scales", "2"], "include 1"),
    ]:
        code, err = _error(capsys, argv)
        assert code == 2 and message in err, (message, err)


def test_unreadable_images_are_reported_and_skipped(drawn, tmp_path, monkeypatch, capsys):
    _, _, noisy_json, images, clean, noisy, _, weights = drawn
    broken = tmp_path / "images"
    os.symlink(images, tmp_path / "real")
    broken.mkdir()
    for name in os.listdir(images):
        os.symlink(os.path.join(images, name), broken / name)
    os.unlink(broken / noisy["images"][0]["file_name"])
    (broken / noisy["images"][0]["file_name"]).write_bytes(b"not a jpeg")
    os.unlink(broken / noisy["images"][1]["file_name"])
    patch_evidence(monkeypatch, clean)
    out = tmp_path / "check"
    code = run_tool(
        [
            "--config-file",
            CONFIG,
            "--json",
            noisy_json,
            "--image-root",
            str(broken),
            "--output",
            str(out),
            "--weights",
            weights,
        ],
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 of 150 images could not be read and are skipped" in printed
    summary = _load(str(out), "run.json")
    assert sorted(summary["unreadable_images"]) == sorted(im["file_name"] for im in noisy["images"][:2])
    skipped = {im["id"] for im in noisy["images"][:2]}
    assert not [x for x in _load(str(out), "label_issues.json") if x["image_id"] in skipped]


def test_out_of_fold_models_are_trained_and_each_scores_its_held_out_images(tmp_path, monkeypatch):
    """The default mode end to end on a tiny shapes copy: two fold trainings (train_net.py, 3
    iterations), each fold's model scoring the images it did not train on."""
    register_shapes("label_tiny", ShapesSpec(num_train=16, num_val=4, seed=4), str(tmp_path / "data"))
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.get("label_tiny_train")
    meta = MetadataCatalog.get("label_tiny_train")
    out = tmp_path / "check"
    overrides = [
        "train.max_iter=3",
        "dataloader.train.total_batch_size=4",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "train.checkpointer.period=100",
    ]
    argv = ["--config-file", CONFIG, "--json", meta.json_file, "--image-root", meta.image_root, "--output", str(out)]
    code = run_tool([*argv, *overrides])
    assert code == 0
    coco = json.load(open(meta.json_file))
    for k in range(2):
        fold = out / "folds" / f"fold{k}"
        assert (fold / "model_final.pth").is_file()
        trained_on = {im["id"] for im in json.load(open(fold / "train.json"))["images"]}
        assert 0 < len(trained_on) < len(coco["images"])
    # With two folds each model trains on exactly the images the other one scores.
    trained = [
        {im["id"] for im in json.load(open(out / "folds" / f"fold{k}" / "train.json"))["images"]} for k in range(2)
    ]
    assert trained[0].isdisjoint(trained[1]) and trained[0] | trained[1] == {im["id"] for im in coco["images"]}
    summary = _load(str(out), "run.json")
    assert summary["mode"] == "2 folds" and summary["scales"] == [1.0, 1.333]
    first = _load(str(out), "label_issues.json")

    # A second run reuses the fold models (no training) and their cached outputs (no inference).
    def no_inference(*args, **kwargs):
        raise AssertionError("the cached evidence should have been read back")

    monkeypatch.setattr(pipeline, "collect_evidence", no_inference)
    code = run_tool([*argv, *overrides])
    assert code == 0 and _load(str(out), "run.json")["minutes"]["training"] < 0.05
    assert _load(str(out), "label_issues.json") == first
    # A model that changed is run again.
    monkeypatch.undo()
    calls = []
    real = pipeline.collect_evidence
    monkeypatch.setattr(pipeline, "collect_evidence", lambda *a, **k: calls.append(1) or real(*a, **k))
    weights = out / "folds" / "fold1" / "model_final.pth"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert run_tool([*argv, *overrides]) == 0 and len(calls) == 1


def test_dense_evidence_is_in_original_pixels_and_its_detections_are_the_models():
    model = small_gfl().eval()
    image = torch.rand(3, 96, 128) * 255
    inputs = [{"image": image, "height": 48, "width": 64}]  # the input is the image upscaled 2x
    with torch.inference_mode():
        found = dense_evidence(model, inputs, min_quality=0.0)[0]
        expected = model(inputs)[0]["instances"]
        images = model.preprocess_image(inputs)
        feats = model.backbone(images.tensor)
        feats = [feats[f] for f in model.head_in_features]
        scores, boxes, _ = model.decode_dense(feats, model.head(feats))
    np.testing.assert_allclose(found["detections"]["boxes"], expected.pred_boxes.tensor.numpy(), atol=1e-4)
    np.testing.assert_allclose(found["detections"]["scores"], expected.scores.numpy(), atol=1e-6)
    np.testing.assert_allclose(found["detections"]["strides"], expected.pred_strides.numpy(), atol=1e-6)
    np.testing.assert_allclose(found["dense"]["boxes"], boxes[0].numpy() / 2, atol=1e-4)
    np.testing.assert_allclose(found["dense"]["scores"], scores[0].numpy(), atol=1e-6)
    assert found["dense"]["sigmas"].shape == (boxes.shape[1], 4) and (found["dense"]["sigmas"] >= 0).all()


def test_mixed_precision_evidence_runs_the_network_in_bf16_and_decodes_in_float32():
    # amp: the backbone and head under bfloat16 autocast (the slow part), the distributions,
    # boxes and scores decoded from their logits in float32: the same evidence to bf16's
    # rounding of the logits.
    model = small_gfl().eval()
    image = torch.rand(3, 96, 128) * 255
    inputs = [{"image": image, "height": 96, "width": 128}]
    seen = []
    hook = model.head.register_forward_hook(lambda module, args, out: seen.append(out[0][0].dtype))
    full = dense_evidence(model, inputs, min_quality=0.0)[0]
    low = dense_evidence(model, inputs, min_quality=0.0, amp=True)[0]
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    for key in ("boxes", "scores", "sigmas"):
        assert low["dense"][key].dtype == np.float32 and low["dense"][key].shape == full["dense"][key].shape
    assert np.abs(low["dense"]["boxes"] - full["dense"]["boxes"]).max() < 2.0  # px, of a 128 px image
    assert 0 < np.abs(low["dense"]["scores"] - full["dense"]["scores"]).max() < 0.02


def test_mirrored_evidence_maps_back_with_left_and_right_swapped():
    dense = {
        "boxes": np.array([[10.0, 5.0, 30.0, 25.0]]),
        "scores": np.array([[0.5]]),
        "sigmas": np.array([[1.0, 2.0, 3.0, 4.0]]),
    }
    back = mirror_evidence(dense, width=100)
    np.testing.assert_allclose(back["boxes"], [[70.0, 5.0, 90.0, 25.0]])
    np.testing.assert_allclose(back["sigmas"], [[3.0, 2.0, 1.0, 4.0]])


class _Predictor:
    """What collect_evidence needs of a LazyPredictor: a model and its input for a BGR image."""

    def __init__(self, model):
        self.model = model

    def preprocess(self, image):
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        return {"image": tensor, "height": image.shape[0], "width": image.shape[1]}


def test_other_scales_add_dense_evidence_in_the_original_pixels():
    model = small_gfl().eval()
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    predictor = _Predictor(model)
    with torch.inference_mode():
        one = next(collect_evidence(predictor, [image], flip=False, min_quality=0.0))
        both = next(collect_evidence(predictor, [image], flip=False, scales=(1.0, 2.0), min_quality=0.0))
    n = len(one["dense"]["boxes"])
    for key in ("boxes", "scores", "sigmas"):  # the image as given comes first, unchanged
        np.testing.assert_allclose(both["dense"][key][:n], one["dense"][key], atol=1e-5)
    for key in one["detections"]:  # detections from the image as given only
        np.testing.assert_allclose(both["detections"][key], one["detections"][key], atol=1e-5)
    big = both["dense"]["boxes"][n:]
    assert len(big) > 3 * n  # twice the size: about four times the locations
    # Mapped back: the 2x view's locations cover the same 96x64 image (centres mean ~(48, 32), not 2x).
    centres = (big[:, :2] + big[:, 2:]) / 2
    np.testing.assert_allclose(centres.mean(axis=0), [48, 32], atol=6)
    with pytest.raises(ValueError, match="include 1.0"):
        next(collect_evidence(predictor, [image], scales=(2.0,)))


def test_the_cache_key_is_the_same_in_another_process(drawn):
    # A lazy config prints its functions with their addresses: a key made of that would change
    # with every process and the cache would never be read back by a later run.
    import subprocess
    import sys

    _, _, noisy_json, images, _, noisy, _, weights = drawn
    script = (
        "from gfocal.config import load_config; from gfocal.label_check import pipeline as p; "
        "coco = p.read_coco({json!r}); records, _ = p.image_records(coco, {images!r}); "
        "cfg = load_config({config!r}, ['model.num_classes=4']); "
        "print(p.evidence_key(cfg, {weights!r}, records, True, (1.0, 1.333)))"
    ).format(config=CONFIG, json=noisy_json, images=images, weights=weights)
    keys = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()[-1]
        for _ in range(2)
    ]
    assert keys[0] == keys[1] and len(keys[0]) == 64


def test_models_score_in_the_precision_the_config_trains_in(monkeypatch):
    # bfloat16 where the config trains in it and the CPU has the units; float32 otherwise (an
    # emulated bf16 would be slower than float32).
    from gfocal.config import load_config

    cfg = load_config(CONFIG, ["train.amp.enabled=True", "train.device=cpu"])
    monkeypatch.setattr(pipeline, "cpu_has_bf16", lambda: True)
    assert pipeline.scoring_amp(cfg)
    monkeypatch.setattr(pipeline, "cpu_has_bf16", lambda: False)
    assert not pipeline.scoring_amp(cfg)
    cfg.train.device = "cuda"  # a CUDA config on a machine without CUDA scores on the CPU
    monkeypatch.setattr(pipeline.torch.cuda, "is_available", lambda: False)
    assert not pipeline.scoring_amp(cfg)
    monkeypatch.setattr(pipeline, "cpu_has_bf16", lambda: True)
    cfg.train.amp.enabled = False
    assert not pipeline.scoring_amp(cfg)
