# Every target runs from the project root. `make setup` is idempotent (see scripts/setup_env.py).
PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV_PYTHON := .venv/bin/python
OUTPUT_DIR ?= output
PYTEST_ARGS ?=

.PHONY: setup test lint lock demo run serve bench bench-protocols bench-speed bench-serving

setup:
	@$(PYTHON_BASE) scripts/setup_env.py

test: setup
	$(VENV_PYTHON) -m ruff check .
	$(VENV_PYTHON) -m pytest -n auto --maxprocesses 4 --dist loadgroup $(PYTEST_ARGS)

# The whole pipeline on a small built-in MovieLens-shaped sample (a few minutes).
demo: setup
	$(VENV_PYTHON) local_runner.py --demo --output-dir $(OUTPUT_DIR)

# The whole pipeline on a local copy of the GroupLens files: make run RAW_DIR=path/to/ml-100k
run: setup
	@test -n "$(RAW_DIR)" || { echo "usage: make run RAW_DIR=path/to/ml-100k [DATASET=movielens/100k-ratings] [EPOCHS=N] [OUTPUT_DIR=output]" >&2; exit 2; }
	$(VENV_PYTHON) local_runner.py --raw-dir $(RAW_DIR) --output-dir $(OUTPUT_DIR) \
		$(if $(DATASET),--dataset $(DATASET)) $(if $(EPOCHS),--epochs $(EPOCHS))

# Model quality against the TFRS tutorial and classic peers: make bench RAW_DIR=path/to/ml-100k
# [PROTOCOL=time|canonical:u1|...] (the split protocol; default random)
bench: setup
	@test -n "$(RAW_DIR)" || { echo "usage: make bench RAW_DIR=path/to/ml-100k" >&2; exit 2; }
	UV_CACHE_DIR=$${UV_CACHE_DIR:-.cache/uv} UV_PROJECT_ENVIRONMENT=.venv \
		.tools/uv-*/bin/uv sync --quiet --frozen --group bench \
		--python $(VENV_PYTHON)
	$(VENV_PYTHON) -m benchmarks.quality --raw-dir $(RAW_DIR) $(if $(PROTOCOL),--split $(PROTOCOL))

# MovieLens 100k's five canonical folds (u1-u5): mean and spread of every model's figures.
bench-protocols: setup
	@test -n "$(RAW_DIR)" || { echo "usage: make bench-protocols RAW_DIR=path/to/ml-100k" >&2; exit 2; }
	UV_CACHE_DIR=$${UV_CACHE_DIR:-.cache/uv} UV_PROJECT_ENVIRONMENT=.venv \
		.tools/uv-*/bin/uv sync --quiet --frozen --group bench \
		--python $(VENV_PYTHON)
	$(VENV_PYTHON) -m benchmarks.protocols --raw-dir $(RAW_DIR) $(PROTOCOLS_ARGS)

# Pipeline cost, cold and cached, on ml-100k (real with RAW_DIR, else synthetic) and on a
# synthetic ml-1m-shaped set: make bench-speed RAW_DIR=path/to/ml-100k [SPEED_ARGS=--with-ml-25m]
bench-speed: setup
	$(VENV_PYTHON) -m benchmarks.pipeline_speed $(if $(RAW_DIR),--raw-dir $(RAW_DIR)) $(SPEED_ARGS)

# Serving latency and throughput of the model `make bench` pushed (in-process, REST, gRPC).
bench-serving: setup
	$(VENV_PYTHON) -m benchmarks.serving $(if $(MODEL_BASE_PATH),--model-base-path $(MODEL_BASE_PATH))

# The model server on the pushed versions (TF Serving's REST API on 8501, gRPC on 8500).
serve: setup
	$(VENV_PYTHON) -m serving --model-base-path $(OUTPUT_DIR)/serving_model

lint: setup
	$(VENV_PYTHON) -m ruff check .

# Re-resolves uv.lock after a change to pyproject.toml (needs the registry).
lock:
	.tools/uv-*/bin/uv lock
