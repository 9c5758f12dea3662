# mxgate — the two commands an operator needs are `make run` and `make test`.
SHELL   := /bin/bash
GO      ?= go
BIN     := bin/mxgate
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build deps test unit e2e lint bench spam-eval run cluster clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/mxgate

# Installs the real peers the tests use (Debian packages, as root) and the
# linters, then checks that each can do what the tests ask of it (swaks with
# TLS, smtp-source to smtp-sink, promtool, prometheus, clamd with the test
# signatures, staticcheck); a missing capability stops here with one line.
# Idempotent: only what is missing is installed. `scripts/install-deps.sh
# --check` only checks.
deps:
	./scripts/install-deps.sh

# The whole suite: lint, unit tests with the race detector, end-to-end tests
# against real processes on loopback.
test: deps lint unit e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$$($(GO) env GOPATH)/bin/staticcheck ./...

unit:
	$(GO) test -race -count=1 -timeout 10m $$($(GO) list ./... | grep -v /e2e)

e2e: build
	MXGATE_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m -v ./e2e/ 2>&1 | tee e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|e2e:' ; exit $${PIPESTATUS[0]}

# Benchmark against Postfix, and against Postfix with rspamd as its milter,
# on this machine (needs root: Postfix, and the private rspamd instance
# whose workers run as _rspamd). `go run ./e2e/bench -h` lists the knobs.
bench: build
	./scripts/install-deps.sh --bench
	$(GO) run ./e2e/bench -mxgate $(BIN)

# The spam filter measured on the SpamAssassin corpus in testdata/spamassassin:
# 5-fold stratified cross-validation, a fresh Bayes store per fold, each
# model's ham flagged/quarantined/rejected and spam caught at the tag (5),
# quarantine (8) and reject (15) thresholds (e2e/spameval).
spam-eval:
	$(GO) run ./e2e/spameval

# A node on unprivileged ports with a local stand-in backend (devsink) and a
# clamd loaded with the test signatures in testdata/clamav (EICAR, clam.exe);
# scripts/dev-run.sh starts the node once clamd answers PING.
run: build
	@./scripts/clamd-test.sh install
	@$(GO) build -o bin/devsink ./deployments/devsink
	@echo "mxgate: a node for example.test is starting"
	@echo "  send mail:  swaks --server 127.0.0.1:2525 --from you@example.org --to user@example.test"
	@echo "  metrics:    http://127.0.0.1:8025/metrics   ready: http://127.0.0.1:8025/readyz"
	@echo "  delivered:  tmp/delivered/*.eml (the backend stand-in prints a line per message)"
	@MXGATE_BIN=$(BIN) ./scripts/dev-run.sh

# Three nodes on loopback (deployments/cluster/mx1..3.yaml) with one clamd
# and the backend stand-in: the cluster forms by itself (bootstrap_expect 3).
# The nodes start once clamd answers PING.
cluster: build
	@./scripts/clamd-test.sh install
	@mkdir -p tmp/delivered tmp/cluster
	@$(GO) build -o bin/devsink ./deployments/devsink
	@./$(BIN) cluster tls-init -dir tmp/cluster/tls -nodes mx1,mx2,mx3 -hosts 'mx1=127.0.0.1;mx2=127.0.0.1;mx3=127.0.0.1' >/dev/null
	@echo "mxgate: a three-node cluster for example.test is starting (logs in tmp/cluster/mxN.log)"
	@echo "  send mail:  swaks --server 127.0.0.1:2525 --from you@example.org --to user@example.test   (mx2: 2526, mx3: 2527)"
	@echo "  cluster:    ./$(BIN) cluster members -http http://127.0.0.1:8025   (status: cluster status)"
	@echo "  metrics:    http://127.0.0.1:8025/metrics  8026  8027"
	@./scripts/clamd-test.sh run 3310 & clamd=$$!; \
	  trap "kill $$clamd 2>/dev/null" EXIT INT TERM; \
	  ./scripts/clamd-test.sh wait 3310 30 $$clamd || exit 1; \
	  ./bin/devsink -listen 127.0.0.1:2626 -dir tmp/delivered & sink=$$!; \
	  for i in 1 2 3; do ./$(BIN) serve -config deployments/cluster/mx$$i.yaml 2>tmp/cluster/mx$$i.log & eval node$$i=$$!; done; \
	  trap "kill $$clamd $$sink $$node1 $$node2 $$node3 2>/dev/null" EXIT INT TERM; \
	  wait $$node1 $$node2 $$node3

clean:
	rm -rf bin tmp e2e.log
