# `make test` and `make demo` work on a fresh machine: both run `make setup` first.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo clean-env paper-tables

setup:
	bash tools/misc/setup_env.sh

test: setup
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS) tests

demo: setup
	$(PY) tools/misc/demo.py

paper-tables: setup
	$(PY) tools/analysis_tools/paper_tables.py

clean-env:
	rm -rf .venv
