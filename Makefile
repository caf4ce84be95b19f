# Two commands on a fresh machine:  make demo   (main job on the embedded default)
#                                   make test   (the test suite)
# Both create .venv and install everything first (idempotent).
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# The install is editable in setuptools' strict mode: a plain tree of links under build/ that
# static analysers and IDEs follow (the default mode's import hook they cannot). A link tree does
# not see a file added or removed later, so the set of package files is part of the stamp's name:
# adding a module re-links on the next make.
FILES := $(shell find learnsieve pipeline models configs -type f \( -name '*.py' -o -name '*.yaml' \) | LC_ALL=C sort | cksum | cut -d' ' -f1)
LINKS := $(VENV)/.links-$(FILES)
EDITABLE := --config-settings editable_mode=strict
OUT ?= runs/demo
# test processes (pytest-xdist; a test file stays in one process: its module fixtures are built once)
TEST_WORKERS ?= 2

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# timm needs torchvision; this pair installs from local wheels (see docs/DEVELOPING.md)
	$(VENV)/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(VENV)/bin/pip install -q -e ".[test,gcp,open-clip,open-clip-train,dask]" $(EDITABLE)
	touch $(STAMP)

$(LINKS): $(STAMP)
	rm -f $(VENV)/.links-*
	$(VENV)/bin/pip install -q --no-deps -e . $(EDITABLE)
	touch $(LINKS)

install: $(LINKS)

demo: $(LINKS)
	$(VENV)/bin/learnsieve demo --config configs/demo.yaml --out $(OUT)

test: $(LINKS)
	$(VENV)/bin/python -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile

test-fast: $(LINKS)
	$(VENV)/bin/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

bench: $(LINKS)
	$(VENV)/bin/python benchmarks/bench_curate.py

clean:
	rm -rf $(VENV) runs .pytest_cache build
