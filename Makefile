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
REPLICAS ?= 1
E2E_TIMEOUT ?= 40m
export AGENTS REPLICAS

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
# Two stacks, one after the other: the suite wants the fleet (two legacy
# masters, three agents, one bridge), then integration/ha wants three bridge
# replicas sharing six agents.
E2E_MAIN := ./integration/ ./integration/stack/
E2E_HA := ./integration/ha/
test-e2e:
	@rc=0; out=$$(mktemp); set -o pipefail; \
	phase() { \
	  if env "$$1" "$$2" "$$3" scripts/stack.sh up >/dev/null; then \
	    $(GO) test -count=1 -timeout $(E2E_TIMEOUT) $$4 2>&1 | tee -a "$$out" || rc=$$?; \
	  else rc=$$?; echo "test-e2e: make up failed (exit $$rc)" >&2; fi; \
	  if [ $$rc -ne 0 ]; then \
	    for c in .local/cmd/*; do f=.local/logs/$${c##*/}.log; [ -f "$$f" ] || continue; \
	      echo "==== tail -n 40 $$f"; tail -n 40 "$$f"; done; \
	  fi; \
	  scripts/stack.sh down >/dev/null 2>&1 || echo "test-e2e: make down failed" >&2; \
	}; \
	phase AGENTS=3 MASTERS=2 REPLICAS=1 "$(E2E_MAIN)"; \
	[ $$rc -ne 0 ] || phase AGENTS=6 MASTERS=2 REPLICAS=3 "$(E2E_HA)"; \
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

# The generated Go code is committed; this regenerates it with protoc
# (Debian's protobuf-compiler) and the pinned plugins, installed outside the
# clone, then writes api/titus/proto.sum: the plugins' versions and the
# .proto files' checksums, which api/titus's test compares with the files
# (a .proto changed without `make proto` fails go test).
PROTOC_GEN_GO_VERSION := v1.36.11
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTO_BIN ?= $(HOME)/.cache/vk-titus/bin
PROTO_MODULE := github.com/vk-titus/vk-titus
.PHONY: proto
proto:
	@command -v protoc >/dev/null || { echo "make proto: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
	GOBIN=$(PROTO_BIN)/protoc-gen-go@$(PROTOC_GEN_GO_VERSION) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(PROTO_BIN)/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	protoc -I api/titus/proto \
	  --plugin=protoc-gen-go=$(PROTO_BIN)/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)/protoc-gen-go \
	  --plugin=protoc-gen-go-grpc=$(PROTO_BIN)/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)/protoc-gen-go-grpc \
	  --go_out=. --go_opt=module=$(PROTO_MODULE) \
	  --go-grpc_out=. --go-grpc_opt=module=$(PROTO_MODULE) \
	  api/titus/proto/netflix/titus/*.proto
	{ echo "# Written by make proto; api/titus's test compares it with the .proto files."; \
	  echo "protoc-gen-go $(PROTOC_GEN_GO_VERSION)"; \
	  echo "protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION)"; \
	  (cd api/titus && sha256sum proto/netflix/titus/*.proto); } > api/titus/proto.sum

clean:
	-@scripts/stack.sh down
	rm -rf bin .local
