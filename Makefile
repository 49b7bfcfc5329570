# Two commands do all the set-up: `make up` (the book studio, tiny profile) and `make test`.
VENV ?= .venv
PYTHON ?= python3
# On CPU-only machines the CPU wheel is enough; GPU users: TORCH_SPEC="torch" (or a CUDA index) gets a CUDA build.
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= tiny
BIN := $(VENV)/bin

.PHONY: up test system-deps install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

install: system-deps $(BIN)/.installed

up: install
	$(BIN)/fabula up --profile $(PROFILE)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
