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

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(NORSE_SPEC)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) experiments/reproduce_cet.py --quick --out runs/demo --report runs/demo/report.md

test: $(STAMP)
	$(PY) -m pytest -n 2 tests

bench: $(STAMP)
	$(PY) benchmarks/bench_cet_step.py
	$(PY) benchmarks/bench_spiking.py --quick

clean:
	rm -rf runs .pytest_cache
