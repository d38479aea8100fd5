# Thin entry points; the logic lives in Python (llm_course/, grader/, tests/).
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
# nbgrader shells out to alembic and jupyter: the venv's bin/ must be on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: setup book test lab labs bench clean

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

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

# Solution cells from the library, then the student notebooks from the solutions.
labs: setup
	$(BIN)/python -m grader sync
	$(BIN)/python -m grader release

bench: setup
	$(BIN)/python bench/attention.py
	$(BIN)/python bench/tokenizers.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/vectordb.py

clean:
	rm -rf _build .jupyter_cache
