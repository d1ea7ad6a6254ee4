# Every target runs from the project root. `make setup` is idempotent (see scripts/setup_env.py).
PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV_PYTHON := .venv/bin/python
OUTPUT_DIR ?= output
PYTEST_ARGS ?=

.PHONY: setup test lint lock

setup:
	@$(PYTHON_BASE) scripts/setup_env.py

test: setup
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV_PYTHON) -m ruff check .

# Re-resolves uv.lock after a change to pyproject.toml (needs the registry).
lock:
	.tools/uv-*/bin/uv lock
