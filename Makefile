# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The same package with its hot modules compiled by mypyc (setup.py): what the bench
# measures, and what the proxy tests run against a second time.
FAST := .venv-compiled
FAST_STAMP := $(FAST)/.installed
SOURCES := $(shell find src -name '*.py') setup.py pyproject.toml

.PHONY: demo test bench fuzz soak lint venv compiled system-deps clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

$(FAST_STAMP): $(SOURCES)
	test -x $(FAST)/bin/python || $(PYTHON) -m venv $(FAST)
	$(FAST)/bin/pip install --quiet --upgrade pip
	$(FAST)/bin/pip install --quiet '.[test,bench]' 'setuptools>=68' wheel
	TULLE_COMPILE=1 $(FAST)/bin/pip install --quiet --force-reinstall --no-deps \
		--no-build-isolation .
	touch $(FAST_STAMP)

venv: $(STAMP)

compiled: $(FAST_STAMP)

system-deps:
	./scripts/install-system-deps.sh

demo: $(STAMP)
	$(BIN)/tulle demo

# The whole suite on the pure-Python package, then the data plane's tests again on the
# compiled one (tests/support starts the `tulle` beside the Python that runs them).
test: $(STAMP) $(FAST_STAMP) system-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q
	$(FAST)/bin/python -m pytest -q -p no:cacheprovider tests/unit/http tests/unit/proxy \
		tests/unit/balance tests/integration

bench: $(FAST_STAMP) system-deps
	$(FAST)/bin/python -m bench

# 2M codec inputs under atheris and 230k upstream cases through a real proxy (~20 min);
# `make test` runs a 30-second version. Results: bench/results/fuzz.md.
fuzz: $(STAMP)
	$(BIN)/python -m bench fuzz

# 10 minutes of mixed load with faults; RSS and open fds over time. bench/results/soak.md.
soak: $(FAST_STAMP)
	$(FAST)/bin/python -m bench soak

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) $(FAST) build src/*.egg-info .pytest_cache
