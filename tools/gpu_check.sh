#!/usr/bin/env bash
# One run on a CUDA machine that writes one report: the GPU and versions; CUDA AMP (fp16 + gradient
# scaler) training of the whole quick start (loss falls, no NaN, iterations/s, val AP of at least
# 50: the CPU reaches 56-57), then LD under it (200 iterations, AMP) and its evaluation with
# test-time augmentation; GFL v1 / v2 against Detectron2's FCOS R-50-FPN at 800x1333, batch 1
# inference (eager, optimised, AMP) and a batch-2 train step; and the tests that run on CUDA
# (pytest -k cuda). About 6 minutes on an H200.
#
# For a machine with Python 3.12 and PyTorch already installed and no network. The packages it
# lacks travel as wheels: run `bash tools/gpu_wheels.sh` first where pip works (it fills
# .gpu-wheels/, git-ignored: carry it along, e.g. the device tool's `carry: [".gpu-wheels"]`);
# this script installs them into a temporary folder, never into the machine's Python. On a
# machine without CUDA it says what it would do and exits 0. Exit status: 0 when every step
# passed, else 1 (the report holds each step's output either way).
#
#   bash tools/gpu_check.sh [REPORT_DIR]     # default: $OUT if set, else output/gpu_check
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=.gpu-wheels
REPORT_DIR=${1:-${OUT:-output/gpu_check}}
if [ "$#" -gt 1 ] || [[ "${1:-}" == -* ]]; then
  echo "usage: bash tools/gpu_check.sh [REPORT_DIR]" >&2
  exit 2
fi

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
  cat <<EOF
gpu_check: no CUDA device here ($PY: $("$PY" -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo "no PyTorch")).
On a CUDA machine this script would, in about 6 minutes, write $REPORT_DIR/gpu_check.md with:
  1. the GPU (nvidia-smi), Python, PyTorch, CUDA and cuDNN versions;
  2. pytest -k cuda: the mixed-precision and inference tests on the GPU;
  3. train_net.py on the quick start with train.device=cuda train.amp.enabled=True (1,500
     iterations): first/last losses, NaN check, iterations/s, val box AP (at least 50); then LD
     (a student under that model, 200 iterations, AMP) and its test-time-augmented evaluation;
  4. tools/benchmark.py --device cuda at 800x1333 (GFL v1, v2, D2 FCOS; inference batch 1
     eager and optimised, train step batch 2), in float32 and with --amp; GFocal-Nano at
     416x416 with its COCO batch of 96 (AMP).
Missing packages come from $WHEELS/ (bash tools/gpu_wheels.sh, where pip works).
EOF
  exit 0
fi

mkdir -p "$REPORT_DIR"
REPORT=$REPORT_DIR/gpu_check.md
WORK=$(mktemp -d /tmp/gfocal-gpu.XXXXXX)
SITE=$WORK/site
export DETECTRON2_DATASETS=$WORK/datasets PYTHONUNBUFFERED=1

FAILED=0
section() { printf '\n## %s\n\n' "$1" >>"$REPORT"; echo "gpu_check: $1" >&2; }
# A step's output, its status and seconds, fenced in the report; a failure does not stop the rest.
step() {
  local limit=$1
  shift
  local start=$SECONDS
  printf '```\n$ %s\n' "$*" >>"$REPORT"
  timeout "$limit" "$@" >"$WORK/step.log" 2>&1
  local status=$?
  tail -n 40 "$WORK/step.log" >>"$REPORT"
  printf '```\nexit %s after %ss%s\n' "$status" "$((SECONDS - start))" \
    "$([ "$status" = 124 ] && echo " (stopped at its ${limit}s limit)")" >>"$REPORT"
  [ "$status" = 0 ] || FAILED=1
  return "$status"
}
NEEDED="torch torchvision numpy cv2 PIL yaml tabulate cloudpickle tqdm tensorboard pkg_resources pytest
  fvcore iopath omegaconf hydra pycocotools faster_coco_eval termcolor detectron2 timm"
missing() {
  "$PY" -c "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))" \
    $NEEDED 2>/dev/null
}

echo "# GFocal GPU check, $(date -u +%Y-%m-%dT%H:%MZ)" >"$REPORT"

section "Set-up"
export PYTHONPATH=$SITE:$PWD/projects/GFocal:$PWD/projects/GFocal/runtime${PYTHONPATH:+:$PYTHONPATH}
if [ -n "$(missing)" ]; then
  echo "Missing here: $(missing)" >>"$REPORT"
  if [ ! -d "$WHEELS" ]; then
    echo "No $WHEELS/: run bash tools/gpu_wheels.sh where pip works, and bring the folder." >>"$REPORT"
    echo "gpu_check: missing $(missing) and no $WHEELS/ (bash tools/gpu_wheels.sh first)" >&2
    exit 1
  fi
  step 45 "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    $(ls "$WHEELS"/*.whl | grep -v sal_detectron2)
  # sal-detectron2's wheel is tagged for CPython 3.10 (its compiled _C): take its Python files.
  step 15 "$PY" -c "import glob, sys, zipfile; zipfile.ZipFile(glob.glob(sys.argv[1])[0]).extractall(sys.argv[2])" \
    "$WHEELS/sal_detectron2-*.whl" "$SITE"
  rm -f "$SITE"/detectron2/_C*.so
fi
if [ -n "$(missing)" ]; then
  echo "Still missing after the set-up: $(missing); stopping." >>"$REPORT"
  echo "gpu_check: still missing $(missing) (see $REPORT)" >&2
  exit 1
fi
[ -e projects/GFocal/gfocal/configs ] || ln -s ../../../configs projects/GFocal/gfocal/configs

section "Machine"
{
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$PY" - <<'EOF'
import platform, torch, detectron2
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, detectron2 {detectron2.__version__}")
print(f"GPU: {torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}")
EOF
  echo '```'
} >>"$REPORT" 2>&1

section "Tests on CUDA (pytest -k cuda)"
step 75 "$PY" -m pytest -q -p no:cacheprovider tests/test_precision.py -k cuda

section "Quick start, CUDA AMP (fp16 + gradient scaler), the whole schedule"
step 330 "$PY" train_net.py --config-file configs/Quickstart/gfl_shapes.py train.device=cuda \
  train.amp.enabled=True train.eval_period=0 train.checkpointer.period=100000 \
  train.log_period=20 dataloader.train.num_workers=6 dataloader.test.num_workers=4 \
  "train.output_dir=$WORK/amp"
# A training's metrics.json: every KEY stays finite and the first falls (unless FINITE_ONLY=1);
# step time; the final AP, at least MIN_AP when that is set.
cat >"$WORK/metrics.py" <<'EOF'
import json, math, os, statistics, sys
records = [json.loads(line) for line in open(sys.argv[1])]
ok = True
for i, key in enumerate(sys.argv[2:]):
    values = [(r["iteration"], r[key]) for r in records if key in r]
    finite = all(math.isfinite(v) for _, v in values)
    falls = values[-1][1] < values[0][1]
    print(f"{key}: iteration {values[0][0]} {values[0][1]:.4f} -> iteration {values[-1][0]} {values[-1][1]:.4f}; "
          f"all finite: {finite}; falls: {falls}")
    ok = ok and finite and (falls or i > 0 or os.environ.get("FINITE_ONLY") == "1")
times = [r["time"] for r in records if "time" in r]
print(f"iterations/s (median step time, batch 16): {1 / statistics.median(times):.1f}")
ap = [r for r in records if "bbox/AP" in r]
if ap:
    print(f"val box AP at the end of training: {ap[-1]['bbox/AP']:.1f}")
min_ap = float(os.environ.get("MIN_AP", "nan"))
if math.isfinite(min_ap) and not (ap and ap[-1]["bbox/AP"] >= min_ap):
    print(f"the final AP is below {min_ap}")
    ok = False
sys.exit(0 if ok else 1)
EOF
MIN_AP=50 step 15 "$PY" "$WORK/metrics.py" "$WORK/amp/metrics.json" total_loss

section "LD on CUDA AMP: the student under that model, 200 iterations"
step 120 "$PY" train_net.py --config-file configs/Quickstart/ld_shapes.py train.device=cuda \
  train.amp.enabled=True train.max_iter=200 train.eval_period=0 train.checkpointer.period=100000 \
  train.log_period=20 dataloader.train.num_workers=6 dataloader.test.num_workers=4 \
  "distill.teacher.weights=$WORK/amp/model_final.pth" "train.output_dir=$WORK/ld"
# Under a trained teacher the LD term first grows with the student's quality weights (as on the
# CPU: it peaks near iteration 60 and is back below its start after ~300), so 200 iterations
# check finiteness only.
FINITE_ONLY=1 step 15 "$PY" "$WORK/metrics.py" "$WORK/ld/metrics.json" total_loss loss_ld

section "Test-time augmentation on CUDA (the quick-start model, the config's views)"
step 60 "$PY" train_net.py --eval-only --config-file configs/Quickstart/gfl_shapes.py train.device=cuda \
  dataloader.test.num_workers=4 dataloader.tta.enabled=True "train.init_checkpoint=$WORK/amp/model_final.pth" \
  "train.output_dir=$WORK/tta"

BENCH=(tools/benchmark.py --device cuda --models gfl gflv2 fcos --height 800 --width 1333 --train-batch 2
  --infer-iters 20 --train-iters 10 --warmup 3)
section "GFL vs Detectron2 FCOS, R-50-FPN, 800x1333, float32"
step 90 "$PY" "${BENCH[@]}" --json "$REPORT_DIR/benchmark_fp32.json"
section "GFL vs Detectron2 FCOS, R-50-FPN, 800x1333, AMP (fp16 autocast)"
step 90 "$PY" "${BENCH[@]}" --amp --json "$REPORT_DIR/benchmark_amp.json"
section "GFocal-Nano, COCO recipe at 416x416: train step at the config's batch 96, AMP"
step 90 "$PY" tools/benchmark.py --device cuda --models gfl_nano --height 416 --width 416 --train-batch 96 \
  --infer-iters 20 --train-iters 10 --warmup 3 --amp --json "$REPORT_DIR/benchmark_nano_amp.json"

echo "gpu_check: report in $REPORT ($([ "$FAILED" = 0 ] && echo "every step passed" || echo "a step failed"))" >&2
rm -rf "$WORK"
exit "$FAILED"
