# eercf: install, test, demo, bench, lint. Every target installs first when needed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= python3
# Demo knobs: PRETRAINED=openai (or a checkpoint path) runs zero-shot on VIDEOS instead of training.
OUT ?= demo_out
PRETRAINED ?=
VIDEOS ?= ../shared/videos/captioned

.PHONY: install test test-fast demo bench lint clean

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	# torch first, pinned to the CPU-usable local build, so nothing pulls another one in.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(PY) -m pipelines.cli demo --output $(OUT) $(if $(PRETRAINED),--pretrained $(PRETRAINED) --videos $(VIDEOS))

bench: install
	$(PY) -m bench

# ruff (whole tree) and mypy (eercf_core, schemas); settings in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(OUT) bench_out .pytest_cache
