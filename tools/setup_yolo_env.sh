#!/usr/bin/env bash
# The benchmark-only Ultralytics environment (.venv-yolo) for `tools/benchmark.py --mode frontier`.
# Ultralytics is AGPL: it lives in its own venv and runs as a separate process (tools/yolo_side.py);
# GFocal, its runtime and its tests never import it. Versions that install together here.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-yolo
STAMP=$VENV/.installed
if [ -f "$STAMP" ] && [ "$STAMP" -nt tools/setup_yolo_env.sh ]; then exit 0; fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
"$VENV/bin/pip" install -q ultralytics==8.4.190 onnx==1.23.2 onnxruntime==1.32.0 onnxslim
YOLO_OFFLINE=True "$VENV/bin/python" -c "import ultralytics, onnxruntime" && touch "$STAMP"
