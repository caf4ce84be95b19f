# Two commands on a fresh machine:  make demo   (main job on the embedded default)
#                                   make test   (the test suite)
# Both create .venv and install everything first (idempotent).
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
OUT ?= runs/demo

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# timm needs torchvision; this pair installs from local wheels (see docs/DEVELOPING.md)
	$(VENV)/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(VENV)/bin/pip install -q -e ".[test,gcp,open-clip,open-clip-train,dask]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/learnsieve demo --config configs/demo.yaml --out $(OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_curate.py

clean:
	rm -rf $(VENV) runs .pytest_cache
