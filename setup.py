#!/usr/bin/env python
"""Installs the packages ``gfocal`` (from projects/GFocal/gfocal, with the configs) and
``gfocal_runtime`` (projects/GFocal/runtime/gfocal_runtime: numpy + opencv + Pillow + onnxruntime
or openvino, never torch; also a distribution of its own, projects/GFocal/runtime/pyproject.toml).

Detectron2 and torch are not declared as install requirements: detectron2 is not on PyPI and
torch must be the exact build the venv already has (see tools/setup_env.sh and README.md).

The repository's ``configs/`` is the one copy of the configs; as Detectron2 does with its model
zoo, the build links (or copies) it to ``gfocal/configs`` so that an installed package finds
them (``gfocal.model_zoo.get_config``) from any directory.
"""

import glob
import os
import re
import shutil

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    """The one version number, from gfocal_runtime/__init__.py (gfocal imports it from there)."""
    with open(os.path.join(HERE, "projects", "GFocal", "runtime", "gfocal_runtime", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def packaged_configs():
    source = os.path.join(HERE, "configs")
    destination = os.path.join(HERE, "projects", "GFocal", "gfocal", "configs")
    if os.path.isdir(source):  # a checkout (an sdist already carries the copy)
        if os.path.islink(destination):
            os.unlink(destination)
        elif os.path.isdir(destination):
            shutil.rmtree(destination)
        try:
            os.symlink(os.path.relpath(source, os.path.dirname(destination)), destination)
        except OSError:
            shutil.copytree(source, destination)
    root = os.path.dirname(destination)
    return [os.path.relpath(p, root) for p in glob.glob(os.path.join(destination, "**", "*.py"), recursive=True)]


setup(
    name="gfocal",
    version=version(),
    description="Generalized Focal Loss (GFL v1/v2) detectors as a Detectron2 project, and a torch-free runtime",
    package_dir={"": "projects/GFocal", "gfocal_runtime": "projects/GFocal/runtime/gfocal_runtime"},
    packages=[
        "gfocal",
        "gfocal.analysis",
        "gfocal.checkpoint",
        "gfocal.data",
        "gfocal.engine",
        "gfocal.export",
        "gfocal.label_check",
        "gfocal.model_zoo",
        "gfocal.modeling",
        "gfocal_runtime",
        "gfocal_runtime.formats",
    ],
    package_data={"gfocal": packaged_configs()},
    python_requires=">=3.9",
    install_requires=[
        "fvcore",
        "pycocotools>=2.0.2",
        "faster-coco-eval==1.8.0",
        "numpy<2",
        "opencv-python",
        "Pillow",
        "PyYAML",  # YOLO data.yaml (gfocal_runtime.formats)
        "defusedxml",  # VOC and CVAT XML from outside, parsed safely
    ],
    extras_require={
        "deploy": ["onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0", "openvino==2026.4.1"],
        # tools/benchmark_label_errors.py compares with cleanlab's ObjectLab; never needed otherwise.
        "benchmark": ["cleanlab==2.9.0", "numpy<2"],
        # gfocal_runtime.sahi_model; install with --no-deps (sahi's metadata asks for numpy 2):
        # pip install --no-deps sahi==0.12.8 shapely==2.2.0
        "sahi": ["sahi==0.12.8", "shapely==2.2.0"],
    },
)
