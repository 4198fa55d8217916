"""Helpers of the label-check tests: a drawn dataset on disk and the tool run in-process."""

import functools
import importlib.util
import json
import os

import cv2
import numpy as np
import torch
from gfl_testing import REPO
from test_label_errors import drawn_dataset, drawn_evidence

from detectron2.config import instantiate

from gfocal.cli import run
from gfocal.config import load_config
from gfocal.label_check import inject_noise, pipeline

CONFIG = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")


@functools.lru_cache(maxsize=None)
def load_tool(relpath="tools/find_label_errors.py", name="find_label_errors"):
    """The command line's module (its main), for the tests of the command line itself."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_drawn_dataset(root, num_images=150, seed=0):
    """The drawn dataset's clean and noisy json and its images (noise with the boxes filled)
    under ``root``; returns (clean json, noisy json, image root, clean coco, noisy coco, changes)."""
    coco = drawn_dataset(num_images, seed)
    images = os.path.join(root, "images")
    os.makedirs(images, exist_ok=True)
    rng = np.random.default_rng(seed)
    for im in coco["images"]:
        pixels = rng.integers(0, 80, (im["height"], im["width"], 3), dtype=np.uint8)
        for a in coco["annotations"]:
            if a["image_id"] == im["id"]:
                x, y, w, h = (int(round(v)) for v in a["bbox"])
                pixels[y : y + h, x : x + w] = (60 * a["category_id"]) % 255
        cv2.imwrite(os.path.join(images, im["file_name"]), pixels)
    noisy, changes = inject_noise(coco, seed=3)
    paths = []
    for name, data in (("clean.json", coco), ("noisy.json", noisy)):
        paths.append(os.path.join(root, name))
        with open(paths[-1], "w") as f:
            json.dump(data, f)
    return paths[0], paths[1], images, coco, noisy, changes


def random_weights(path, num_classes=4):
    """A checkpoint of the quick-start model with random weights and ``num_classes`` classes."""
    cfg = load_config(CONFIG, [f"model.num_classes={num_classes}"])
    torch.manual_seed(0)
    torch.save({"model": instantiate(cfg.model).state_dict()}, path)
    return path


def patch_evidence(monkeypatch, clean_coco):
    """Make the check's scoring step return what a good model says about the clean objects
    (the drawn evidence), so that the run's outputs are known."""
    evidence = drawn_evidence(clean_coco)
    monkeypatch.setattr(
        pipeline, "score_images", lambda cfg, records, *args, **kwargs: {r["id"]: evidence[r["id"]] for r in records}
    )


def run_tool(argv):
    """tools/find_label_errors.py with ``argv``, in-process; its exit status."""
    return run(lambda: load_tool().main(argv), argv)
