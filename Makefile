# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench fuzz soak lint venv system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	./scripts/install-system-deps.sh

demo: $(STAMP)
	$(BIN)/tulle demo

test: $(STAMP) system-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

# 2M codec inputs under atheris and 230k upstream cases through a real proxy (~20 min);
# `make test` runs a 30-second version. Results: bench/results/fuzz.md.
fuzz: $(STAMP)
	$(BIN)/python -m bench fuzz

# 10 minutes of mixed load with faults; RSS and open fds over time. bench/results/soak.md.
soak: $(STAMP)
	$(BIN)/python -m bench soak

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
