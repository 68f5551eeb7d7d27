# Switchboard build, test and benchmark targets. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPC_GATEWAY_VERSION := v2.33.0
FUZZTIME ?= 20s
# bench-log knobs
CLIENTS ?= 1,16,64,256
DURATION ?= 10s
PEER ?= none
ROUNDS ?= 3
# bench-session / bench-failover knobs (PEER=nginx adds the nginx peer to bench-session; DURATION and ROUNDS apply too)
SESSIONS ?= 64
FAILOVER_ROUNDS ?= 10

.PHONY: help build run cluster test test-short bench bench-log bench-cluster bench-session bench-failover bench-gateway lint fuzz proto tools clean image compose-up compose-down chaos-smoke chaos

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## build bin/switchboard (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/switchboard ./cmd/switchboard

run: build ## start a single node with embedded defaults (data in ./data)
	$(BIN)/switchboard serve --data-dir ./data

cluster: build ## three local nodes with a shared CA and gossip key (data in ./data/cluster); Ctrl-C stops them
	scripts/cluster.sh $(BIN)/switchboard ./data/cluster

test: ## the whole test suite, race detector on; then the norace tests (races inside protoactor-go, see docs/architecture.md)
	$(GO) test -race -count=1 -timeout 10m ./...
	$(GO) test -count=1 -timeout 10m -run NoRace ./...

test-short: ## quick unit tests only
	$(GO) test -short -count=1 ./...

bench: bench-log bench-cluster bench-session bench-failover bench-gateway ## every benchmark (machine-readable BENCH lines)

bench-log: build ## 3-node event log vs (PEER=etcd) a 3-member etcd; CLIENTS=1,16,64,256 DURATION=10s ROUNDS=3
	$(BIN)/switchboard bench log --binary $(BIN)/switchboard --clients $(CLIENTS) --duration $(DURATION) --peer $(PEER) --rounds $(ROUNDS)

bench-cluster: ## node ready time, log replay time, cold grain activation p50/p99 (builds bin/switchboard-testkinds); CLUSTER_BENCH_ARGS=--replay-events=100000 scales down
	CGO_ENABLED=0 $(GO) build -trimpath -tags testkinds -ldflags '$(LDFLAGS)' -o $(BIN)/switchboard-testkinds ./cmd/switchboard
	$(BIN)/switchboard-testkinds bench cluster --binary $(BIN)/switchboard-testkinds $(CLUSTER_BENCH_ARGS)

bench-session: build ## relayed sessions over 3 nodes: durable and stream frames/s, p50/p99; PEER=nginx compares with nginx proxying a WebSocket echo; SESSIONS=64 DURATION=10s ROUNDS=3
	$(BIN)/switchboard bench session --binary $(BIN)/switchboard --sessions $(SESSIONS) --duration $(DURATION) --peer $(if $(filter nginx,$(PEER)),nginx,none) --rounds $(ROUNDS)

bench-gateway: build ## admin view latency (p50/p99 per view) through the admin API with 1M events and 10k sessions in the log; GATEWAY_BENCH_ARGS=--events=100000 scales down
	$(BIN)/switchboard bench gateway --binary $(BIN)/switchboard $(GATEWAY_BENCH_ARGS)

bench-failover: build ## session resume time when the guest's or the grain's node is killed (kill -9); fails on loss, duplicates or p99 > 2 s; FAILOVER_ROUNDS=10
	$(BIN)/switchboard bench failover --binary $(BIN)/switchboard --rounds $(FAILOVER_ROUNDS)

# --- containers and chaos (docs/deploy.md, docs/chaos.md) ---
# docker-compose v1 or the compose plugin, whichever is installed.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
COMPOSE_PROJECT ?= switchboard
COMPOSE_FILE := deploy/compose.yaml

image: build ## container image switchboard:$(VERSION) and :latest (FROM scratch + bin/switchboard; nothing is pulled)
	docker build --build-arg VERSION=$(VERSION) -t switchboard:$(VERSION) -t switchboard:latest .

compose-up: image ## three-node cluster in Docker (deploy/compose.yaml, project COMPOSE_PROJECT); waits until every node is ready
	$(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) up -d
	@for i in $$(seq 120); do \
	  ok=0; for n in n1 n2 n3; do \
	    id=$$($(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) ps -q $$n); \
	    [ -n "$$id" ] && [ "$$(docker inspect -f '{{.State.Health.Status}}' $$id)" = healthy ] && ok=$$((ok + 1)); \
	  done; \
	  if [ $$ok = 3 ]; then echo "three nodes ready; the host token is in: $(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) logs init"; exit 0; fi; \
	  sleep 1; \
	done; echo "nodes not ready after 120 s:"; $(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) ps; exit 1

compose-down: ## stop the Docker cluster and delete its volumes (data, certificates)
	$(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) down -v

# chaos knobs: SEED (default: from the clock, printed with the replay command), CHAOS_DURATION, CHAOS_REPORT
CHAOS_DURATION ?= 60s
CHAOS_REPORT ?= ./data/chaos
chaos-smoke: build ## 3 node processes, kill + pause of random/leader/session nodes over log and session workloads; fails on any violation (report in CHAOS_REPORT)
	$(BIN)/switchboard chaos run --scenario smoke --nodes 3 --duration $(CHAOS_DURATION) $(if $(SEED),--seed $(SEED),) --driver process --report $(CHAOS_REPORT)

chaos: build ## every scenario on every driver usable here (process: kill pause restart rolling smoke membership, and as root network delay partitions; netns, as root: kill pause partition partitions (3 and 5 nodes) network delay diskfull membership all; docker, after make image: kill pause restart partition membership all, and network delay partitions as root), CHAOS_DURATION each; reports in CHAOS_REPORT/DRIVER-SCENARIO[-NODES]
	@fail=; run() { n=$${3:-3}; r=$$1-$$2$$([ $$n = 3 ] || echo -$$n); echo "== chaos $$1 $$2 ($$n nodes)"; \
	    $(BIN)/switchboard chaos run --driver $$1 --scenario $$2 --nodes $$n --duration $(CHAOS_DURATION) \
	    $(if $(SEED),--seed $(SEED),) --image switchboard:$(VERSION) --report $(CHAOS_REPORT)/$$r || fail="$$fail $$r"; }; \
	for sc in kill pause restart rolling smoke membership $$([ "$$(id -u)" = 0 ] && echo network delay partitions); do run process $$sc; done; \
	if [ "$$(id -u)" = 0 ] && command -v ip >/dev/null && command -v iptables >/dev/null; then \
	  for sc in kill pause partition partitions network delay diskfull membership all; do run netns $$sc; done; run netns partitions 5; \
	else echo "== netns driver needs root, ip and iptables: skipped"; fi; \
	if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory image && for sc in kill pause restart partition membership all $$([ "$$(id -u)" = 0 ] && echo network delay partitions); do run docker $$sc; done; \
	else echo "== docker not usable: docker driver skipped"; fi; \
	if [ -n "$$fail" ]; then echo "chaos: failed:$$fail"; exit 1; fi; echo "chaos: every run passed"

lint: tools ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run "^$$" -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	  done; done

proto: ## regenerate protobuf, gRPC, grpc-gateway and OpenAPI code (installs protoc from Debian if missing)
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(BIN) $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION) \
	  github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
	@set -e; for f in $$(find events actors cluster gateway projections -name '*.proto' 2>/dev/null | sort); do \
	  d=$$(dirname $$f); b=$$(basename $$f .proto); echo "protoc $$f"; \
	  PATH=$(BIN):$$PATH protoc -I $$d --go_out=paths=source_relative:$$d --go-grpc_out=paths=source_relative:$$d $$f; \
	  if [ -f $$d/$${b}_http.yaml ]; then \
	    PATH=$(BIN):$$PATH protoc -I $$d --grpc-gateway_out=paths=source_relative,grpc_api_configuration=$$d/$${b}_http.yaml:$$d \
	      --openapiv2_out=grpc_api_configuration=$$d/$${b}_http.yaml,allow_merge=true,merge_file_name=$$b:$$d $$f; \
	  fi; \
	done

tools: ## install pinned developer tools into ./bin
	@test -x $(BIN)/staticcheck || GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean: ## remove build output (not ./data)
	rm -rf $(BIN)
