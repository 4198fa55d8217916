#!/usr/bin/env bash
# Companion of tools/gpu_check.sh: fetches, on this machine (with its package index), the wheels a
# CUDA machine with Python 3.12 and PyTorch but no network lacks, into .gpu-wheels/ (ignored):
#   - pure-Python packages (built here as py3-none-any wheels where PyPI has only sources),
#   - pycocotools and faster-coco-eval for CPython 3.12 on manylinux x86-64,
#   - the sal-detectron2 wheel, whose pure-Python files gpu_check.sh unpacks (its _C is unused).
# Versions are this project's (.venv). Usage: bash tools/gpu_wheels.sh   (about 10 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.gpu-wheels
# (The CUDA image has numpy, opencv-python-headless, matplotlib, tabulate, cloudpickle, tqdm,
# tensorboard, Pillow, PyYAML and pytest: see the device's KINDS.md.) setuptools < 81 brings
# pkg_resources, which detectron2.model_zoo imports.
PURE=(fvcore==0.1.5.post20221221 iopath==0.1.10 yacs==0.1.8 omegaconf==2.3.1 hydra-core==1.3.8
  antlr4-python3-runtime==4.9.3 termcolor==3.3.0 portalocker==4.4.2 "setuptools<81"
  timm==1.0.31)  # the light models' backbones (its hub client is optional: no weights are fetched there)
BINARY=(pycocotools==2.0.11 faster-coco-eval==1.8.0)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)

if [ "$#" -gt 0 ]; then
  echo "usage: bash tools/gpu_wheels.sh   (no arguments; writes $DEST/)" >&2
  exit 2
fi
# pip, minus this machine's noise about index folders it does not have; keeps pip's exit status.
pip_q() {
  "$PY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
rm -rf "$DEST" && mkdir -p "$DEST"
pip_q wheel -q --no-deps -w "$DEST" "${PURE[@]}"
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
pip_q download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platform_args[@]}" -d "$DEST" "${BINARY[@]}"
pip_q download -q --no-deps --only-binary=:all: --python-version 3.10 -d "$DEST" sal-detectron2==0.7.2
ls -1 "$DEST"
du -sh "$DEST"
