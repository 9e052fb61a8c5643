# Quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench readme install clean mutate multihost scaling

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxpass demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m benchmarks
	$(PY) -m benchmarks.readme

readme: $(STAMP)
	$(PY) -m benchmarks.readme

clean:
	rm -rf $(VENV) build *.egg-info

# plants classic bugs in the core (a copy of it), one at a time; fails if a test suite misses one
mutate: $(STAMP)
	$(PY) tools/mutate.py

# two local processes x two CPU devices with jax.distributed (gloo): the multi-host launch recipe, checked
multihost: $(STAMP)
	$(PY) examples/multihost_local.py

# drops/s on 1, 2, 4, 8 simulated CPU devices (overhead on a 2-core machine; all GPUs of a GPU host)
scaling: $(STAMP)
	$(PY) -m benchmarks.scaling
