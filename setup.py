#!/usr/bin/env python
"""Installs the pure-Python package ``gfocal`` from projects/GFocal/gfocal.

Detectron2 and torch are not declared as install requirements: detectron2 is not on PyPI and
torch must be the exact build the venv already has (see tools/setup_env.sh and README.md).
"""
from setuptools import find_packages, setup

setup(
    name="gfocal",
    version="0.1.0",
    description="Generalized Focal Loss (GFL v1/v2) detectors as a Detectron2 project",
    package_dir={"": "projects/GFocal"},
    packages=find_packages(where="projects/GFocal", include=["gfocal", "gfocal.*"]),
    python_requires=">=3.9",
    install_requires=["fvcore", "pycocotools>=2.0.2", "numpy<2"],
)
