# The README's commands. Everything installs into .venv; nothing outside it is assumed
# but a Python 3.11 interpreter and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SEEDS  ?= 1000
JOBS   ?= 2

.PHONY: venv test lint typecheck layers unit sim sim-demo run clean proto proto-check jepsen bench bench-geo idle shortener e2e

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict paxos cluster kvstore examples/shortener

layers: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -n $(JOBS) --dist worksteal --durations=15

PROTOC = $(BIN)/python -m grpc_tools.protoc -I proto --python_out=$(1) --pyi_out=$(1) --grpc_python_out=$(1) proto/kvstore/v1/*.proto

## make proto: regenerate kvstore/v1 from proto/ (commit the result)
proto: $(STAMP)
	$(call PROTOC,.)

## the committed generated code must be exactly what proto/ generates
proto-check: $(STAMP)
	@rm -rf .proto-check && mkdir -p .proto-check
	@$(call PROTOC,.proto-check)
	@for f in .proto-check/kvstore/v1/*; do cmp -s "$$f" "kvstore/v1/$$(basename $$f)" \
	  || { echo "kvstore/v1/$$(basename $$f) is stale: run make proto"; rm -rf .proto-check; exit 1; }; done
	@rm -rf .proto-check
	@echo "generated code matches proto/"

## make test: lint, mypy --strict on paxos/, import-layer contracts, then the whole pytest suite
## (unit, property, golden scenarios, planted bugs, and the CI sweep of simulator seeds).
test: lint typecheck layers proto-check unit

## make sim SEEDS=N: N simulator seeds with faults; ends with "N seeds, V violations".
sim: $(STAMP)
	$(BIN)/python -m tests.sim --seeds $(SEEDS) --jobs $(JOBS)

## make shortener: a local cluster, three URL-shortener servers (:8081-8083) and HAProxy on
## :8080 in front when it is installed (else the servers' addresses); Ctrl-C stops it all.
shortener: $(STAMP)
	$(BIN)/python -m examples.shortener.local $(ARGS)

## make e2e: the shortener's browser test (Playwright driving Chromium); installs Playwright,
## and without a Chromium says in one line what to install.
e2e: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,e2e]'
	$(BIN)/python -m tests.e2e

## make run: a local three-datacenter cluster (kvstore up); Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/kvstore up --dir data

## make jepsen ARGS="--duration 60 --nemesis partition,kill --seed 7": a fault-test run of real
## processes (default: 5 minutes, every fault kind); ends with "verdict: V; output in DIR".
jepsen: $(STAMP)
	$(BIN)/python -m tests.jepsen run $(ARGS)

## make bench: the standard table (put, get, mixed 0.5 and 0.95 at concurrency 1 and 64, and
## the gRPC echo ceiling) against a local cluster; writes docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/kvstore bench --local --suite standard --calibrate --duration 10 \
	  --markdown docs/benchmarks.md $(ARGS)

## make idle SHARDS=N: a local cluster of N shards (default 1000) left idle; each node's CPU
## over 30 s; ends with "idle: N shards, max P% of a core per node".
SHARDS ?= 1000
idle: $(STAMP)
	$(BIN)/python -m kvstore.bench.idle --shards $(SHARDS) $(ARGS)

## make bench-geo: three DCs 60 ms apart (--wan-latency-ms 30); put, linearizable get and
## bounded-stale get from a client in each DC, for a shard led from dc1; writes docs/geo-bench.md.
bench-geo: $(STAMP)
	$(BIN)/kvstore bench --local --wan-latency-ms 30 --suite geo --duration 10 --keys 200 \
	  --markdown docs/geo-bench.md $(ARGS)

## make sim-demo: one narrated simulator seed (elections, faults, recovery).
sim-demo: $(STAMP)
	$(BIN)/python -m tests.sim --seed 1 --narrate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
