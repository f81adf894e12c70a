# vk-titus: build, local stack and tests. GNU make.
#
#   make build       bin/vk-titus, bin/legacy-agent (add a binary: append to BINS)
#   make up          start the local stack (AGENTS=1 by default; VK_TITUS=0 skips vk-titus)
#   make down        stop it (state under .local/ is kept; `make clean` removes it)
#   make demo        scripts/demo.sh
#   make test        test-unit, then test-e2e
#   make test-unit   go test of every package but ./integration/... (fuzz seed corpora included)
#   make test-e2e    make up; go test ./integration/...; make down (always)
#   make bench       bench/cmd/vk-bench: vk-titus vs a baseline virtual node on the local stack
#                    (BENCH_FLAGS, e.g. --burst 100 --scale 1000 --restart 500 --rounds 1)
#   make chaos       cmd/vk-chaos: seeded faults under a mixed workload, then invariant checks
#                    (DURATION=20m SEED=<n> CHAOS_FLAGS; report .local/chaos/latest.md; not in CI)
#   make clean       make down, then remove bin/ and .local/

SHELL := /bin/bash
.DEFAULT_GOAL := build

GO ?= go
BINS := vk-titus legacy-agent legacy-master
AGENTS ?= 1
E2E_TIMEOUT ?= 40m
export AGENTS

.PHONY: build up down demo test test-unit test-e2e bench clean FORCE

build: $(addprefix bin/,$(BINS))

# Always handed to go build: its cache decides what is stale.
bin/%: FORCE
	$(GO) build -o $@ ./cmd/$*

up:
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

demo:
	@scripts/demo.sh

test:
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-e2e

test-unit:
	$(GO) test $$($(GO) list ./... | grep -v /integration)

# The stack is always brought down, and the exit code is go test's (or up's).
# On failure the tails of the current components' logs are printed, then go test's
# package result lines once more so that they stay the closing lines.
# The end-to-end suite wants the fleet: two legacy masters, three agents.
test-e2e:
	@rc=0; out=$$(mktemp); \
	if AGENTS=3 MASTERS=2 scripts/stack.sh up >/dev/null; then \
	  set -o pipefail; \
	  $(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./integration/... 2>&1 | tee "$$out" || rc=$$?; \
	else rc=$$?; echo "test-e2e: make up failed (exit $$rc)" >&2; fi; \
	if [ $$rc -ne 0 ]; then \
	  for c in .local/cmd/*; do f=.local/logs/$${c##*/}.log; [ -f "$$f" ] || continue; \
	    echo "==== tail -n 40 $$f"; tail -n 40 "$$f"; done; \
	fi; \
	scripts/stack.sh down >/dev/null 2>&1 || echo "test-e2e: make down failed" >&2; \
	if [ $$rc -ne 0 ] && [ -s "$$out" ]; then \
	  echo "==== go test results (repeated)"; grep -E '^(ok|FAIL|---|\?|panic:)' "$$out" || true; \
	fi; \
	rm -f "$$out"; exit $$rc

# The bench brings the stack up when it is not (and down again at the end),
# and deletes every pod it created. Report: .local/bench/latest.{md,json}.
bench:
	$(GO) build -o bin/vk-bench ./bench/cmd/vk-bench
	bin/vk-bench $(BENCH_FLAGS)

# The chaos run brings the stack up (AGENTS=3 MASTERS=2) when it is not, and
# down again at the end; it stops by itself after DURATION plus the settle time.
DURATION ?= 20m
SEED ?= 0
.PHONY: chaos
chaos:
	$(GO) build -o bin/vk-chaos ./cmd/vk-chaos
	bin/vk-chaos --duration $(DURATION) --seed $(SEED) $(CHAOS_FLAGS)

clean:
	-@scripts/stack.sh down
	rm -rf bin .local
