# Setup is two commands: `make demo` and `make test`. Both create .venv and install the project on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-semantic test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

# The main job: Panoptic-FPN with and without OCR on the embedded COCO-panoptic-format default, scored by PQ.
demo: $(STAMP)
	$(PY) experiments/panoptic_coco.py

# OCRNet's Fig. 1 in miniature: FCN vs OCR vs GT-OCR on the synthetic "context matters" set.
demo-semantic: $(STAMP)
	$(PY) experiments/semantic_segmentation.py

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check ocrformer tests benchmarks experiments

clean:
	rm -rf $(VENV) build *.egg-info
