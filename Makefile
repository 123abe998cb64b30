# Two commands on a fresh machine: `make backtest` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: backtest test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

backtest: $(STAMP)
	$(PY) run_backtest.py $(ARGS)

# Two workers, whole test files each (module fixtures stay in one process): 11-18 min on 2
# cores against 21 in one process. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/bench_indicator.py
	$(PY) benchmarks/bench_feeds.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_portfolio.py
	$(PY) benchmarks/bench_paper.py
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_images.py

clean:
	rm -rf $(VENV) runs
