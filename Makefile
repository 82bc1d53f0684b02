# The two set-up commands of the README: `make demo` and `make test`.
# Both create the environment (.venv) if it is missing. TORCH_SPEC can be overridden by GPU users,
# e.g. `make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# norse declares torchvision (which drags in a CUDA torch): installed without dependencies; its
# real ones (nir, nirtorch) are in pyproject.toml
NORSE_SPEC ?= norse==1.1.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Lava (lava-nc 0.10.0) supports only Python 3.10: its own environment, driven over files
# (neuroprobe/backends/lava). LAVA_BASE: a Python 3.10 (pyenv's 3.10.*, else python3.10 on PATH).
LAVA_VENV ?= .venv-lava
LAVA_SPEC ?= lava-nc==0.10.0
LAVA_BASE ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.10.*/bin/python) $(shell command -v python3.10 2>/dev/null))
LAVA_STAMP := $(LAVA_VENV)/.installed

.PHONY: venv lava demo test bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(NORSE_SPEC)
	touch $(STAMP)

lava: $(LAVA_STAMP)

$(LAVA_STAMP):
	@test -n "$(LAVA_BASE)" || { echo "make lava: no Python 3.10 found (pyenv versions/3.10.* or python3.10); set LAVA_BASE=/path/to/python3.10"; exit 1; }
	test -x $(LAVA_VENV)/bin/python || $(LAVA_BASE) -m venv $(LAVA_VENV)
	$(LAVA_VENV)/bin/python -m pip install -q --upgrade pip
	$(LAVA_VENV)/bin/python -m pip install -q $(LAVA_SPEC)
	touch $(LAVA_STAMP)

# The main job: distal reward on the fastest engine, its fixed-point deployment, a CET order x delay
# sweep on an embedded Ray, one HTML report (experiments/demo.py; finished parts are reused)
demo: $(STAMP)
	$(PY) experiments/demo.py --out runs/demo

# NEUROPROBE_SKIP_LAVA=1: no Lava environment, its tests skipped on purpose (needs no Python 3.10).
# The 15 slowest tests are listed at the end (keep tests/conftest.py's SLOW_FIRST in step with them).
test: $(STAMP) $(if $(filter 1,$(NEUROPROBE_SKIP_LAVA)),,$(LAVA_STAMP))
	$(PY) -m pytest -n 2 --durations=15 tests

bench: $(STAMP)
	$(PY) benchmarks/bench_cet_step.py
	$(PY) benchmarks/bench_spiking.py --quick
	$(PY) benchmarks/bench_event.py --quick

# The documentation site (mkdocs-material + mkdocstrings, mkdocs.yml) into site/, warnings as errors.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor (not a build warning).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf runs .pytest_cache
