# The two commands (see README.md):
#   make quickstart   set up .venv if needed, then train + evaluate + visualise on the built-in data
#   make test         set up .venv if needed, then run the test suite
PY := .venv/bin/python

.PHONY: setup test quickstart benchmark yolo-env clean

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q tests

quickstart: setup
	$(PY) tools/quickstart.py

benchmark: setup
	$(PY) tools/benchmark.py

# Benchmark-only: Ultralytics (AGPL) in its own venv for `tools/benchmark.py --mode frontier`.
yolo-env:
	@bash tools/setup_yolo_env.sh

clean:
	rm -rf output
