# `make demo` and `make test` do all set-up themselves (see scripts/install.sh).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench clean

install:
	bash scripts/install.sh

demo: install
	$(PY) -m neurocc.demo demo-out

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: install
	$(PY) bench/sim_throughput.py
	$(PY) bench/cortexm.py

clean:
	rm -rf demo-out .pytest_cache
