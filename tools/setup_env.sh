#!/usr/bin/env bash
# Creates (or completes) the project venv .venv/ idempotently.
# - torch 2.14.1 + torchvision 0.29.1 (exact pins)
# - detectron2: an existing one in the venv is kept; otherwise the pure-Python files of the
#   sal-detectron2==0.7.2 wheel are installed with `pip --target` and put on the path with a .pth
# - runtime deps, pytest, and this project (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.gfocal-setup-done
if [ -f "$STAMP" ] && [ "$STAMP" -nt setup.py ] && [ "$STAMP" -nt tools/setup_env.sh ] && [ "$STAMP" -nt requirements.txt ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# A real browser for the review-page test (tests/test_label_page.py): Debian's chromium and its
# driver, installed when missing and this user may (root with apt-get, as on CI).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "Installing chromium and chromium-driver (apt-get) for the page test ..."
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "warning: chromium / chromedriver missing and apt-get unavailable: tests/test_label_page.py will fail" >&2
  fi
fi
VPY=$VENV/bin/python
# pip, minus this machine's noise about index folders it does not have; keeps pip's exit status.
pip_q() {
  "$VPY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
echo "Setting up $VENV (torch, detectron2, dependencies) ..."
pip_q install -q --upgrade "pip>=23"
pip_q install -q torch==2.14.1 torchvision==0.29.1
pip_q install -q -r requirements.txt
if ! "$VPY" -c "import detectron2" >/dev/null 2>&1; then
  SITE=$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  D2DIR=$VENV/detectron2-pure
  rm -rf "$D2DIR"
  pip_q install -q --no-deps --target "$D2DIR" --python-version 3.10 \
    --only-binary=:all: sal-detectron2==0.7.2
  # The wheel's compiled _C is for CPython 3.10 and is never loaded; drop it so nothing tries.
  find "$D2DIR/detectron2" -maxdepth 1 -name '_C*.so' -delete
  echo "$(cd "$D2DIR" && pwd)" > "$SITE/detectron2-pure.pth"
  "$VPY" -c "import detectron2; print('detectron2', detectron2.__version__, 'from', detectron2.__file__)"
fi
# sahi (tests/test_sahi.py, tools/benchmark_small_objects.py): without its dependencies, whose
# metadata asks for numpy 2 / opencv 4.12 (Detectron2 needs numpy < 2); it runs on ours.
pip_q install -q --no-deps sahi==0.12.8 shapely==2.2.0
pip_q install -q --no-deps --no-build-isolation -e .
"$VPY" -c "import gfocal" 
touch "$STAMP"
