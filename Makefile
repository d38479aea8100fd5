# Thin entry points; the logic lives in Python (llm_course/, grader/, tests/).
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
# nbgrader shells out to alembic and jupyter: the venv's bin/ must be on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: setup book test test-browser lab labs bench gpu-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# LLM_COURSE_BOOK=1: figures render as HTML that uses the site's own plotly.js (llm_course.plots).
book: setup node_modules/.installed
	LLM_COURSE_BOOK=1 $(BIN)/jupyter-book build . -W -n --keep-going

test: setup node_modules/.installed
	$(BIN)/python -m pytest

# Only the book build and its browser test (make test runs them too; they skip without Chromium).
test-browser: setup node_modules/.installed
	$(BIN)/python -m pytest -p no:xdist -o addopts="" tests/test_book_build.py tests/test_browser.py

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

# Solution cells from the library, then the student notebooks from the solutions.
labs: setup
	$(BIN)/python -m grader sync
	$(BIN)/python -m grader release

bench: setup
	$(BIN)/python bench/run_all.py

# On a CUDA machine: the GPU tests, then training speed and model FLOPs utilisation.
gpu-check: setup
	$(BIN)/python bench/gpu_check.py

clean:
	rm -rf _build .jupyter_cache
