# The two commands (see README.md):
#   make quickstart   set up .venv if needed, then train + evaluate + visualise on the built-in data
#   make test         set up .venv if needed, then run the test suite
PY := .venv/bin/python

.PHONY: setup test quickstart benchmark clean

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

clean:
	rm -rf output
