# Mooring: `make help` lists the targets.
SHELL := bash
# Node 24 LTS: this machine's own when it is >= 24, else the pinned one in .cache/node (hack/node.sh).
NODE_DIR := $(shell bash hack/node.sh)
ifeq ($(NODE_DIR),)
$(error no Node >= 24 and hack/node.sh could not install one into .cache/node)
endif
export PATH := $(NODE_DIR):$(PATH)
NODE_BIN := node_modules/.bin
DATA_DIR ?= ca/dev-store
LISTEN ?= 127.0.0.1:8443
ADMIN_LISTEN ?= 127.0.0.1:9090

.PHONY: help deps build run test unit e2e netns verify lint format golden webhook-config control-plane bench-build bench-tools bench-inject bench-ca bench-webhook bench-agent bench-cluster bench-mesh

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

node_modules: package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

deps: node_modules ## install the npm dependencies (npm ci)

build: node_modules ## compile TypeScript into dist/
	$(NODE_BIN)/tsc -p tsconfig.build.json

run: build ## run Mooring: `mooring serve` in local mode with its embedded CA in $(DATA_DIR) (LISTEN, ADMIN_LISTEN)
	node bin/mooring.js serve --data-dir $(DATA_DIR) --listen $(LISTEN) --admin-listen $(ADMIN_LISTEN)

control-plane: ## build (once, cached in .cache/bin) kube-apiserver, etcd, kubectl and helm
	bash test/e2e/harness/build-control-plane.sh

test: build control-plane ## run every test: unit, golden, HTTP, integration, netns (root), e2e
	$(NODE_BIN)/jest --selectProjects unit netns e2e

unit: build control-plane ## run the tests that need no root and no apiserver (the chart tests use .cache/bin/helm)
	$(NODE_BIN)/jest --selectProjects unit

netns: build ## run the network-namespace test of `mooring iptables` (root)
	$(NODE_BIN)/jest --selectProjects netns

e2e: build control-plane ## run the end-to-end tests against a real kube-apiserver and etcd
	$(NODE_BIN)/jest --selectProjects e2e --runInBand

golden: build ## rewrite the golden files (injection, iptables, admission) from the current code
	REFRESH_GOLDEN=1 $(NODE_BIN)/jest --selectProjects unit --testPathPatterns test/golden test/http/fixtures.test.ts

webhook-config: build control-plane ## render webhook-config/ and the config part of values.schema.json from the chart
	REFRESH_GOLDEN=1 $(NODE_BIN)/jest --selectProjects unit --testPathPatterns test/chart/generated.test.ts

lint: node_modules ## eslint (type-checked) and prettier check
	$(NODE_BIN)/eslint .
	$(NODE_BIN)/prettier --check .

format: node_modules ## rewrite files with prettier
	$(NODE_BIN)/prettier --write .

bench-build: build
	$(NODE_BIN)/tsc -p bench/tsconfig.json

bench-inject: bench-build ## injector core, one core (bench/RESULTS.md)
	taskset -c 0 node .cache/bench/bench/inject.js

bench-ca: bench-build ## CA: core rates, then HTTP side by side with cfssl (needs wrk, golang-cfssl)
	node .cache/bench/bench/ca.js core
	node .cache/bench/bench/ca.js http --rounds 2 --duration 5 --loader wrk --workers 1
	node .cache/bench/bench/ca.js http --rounds 2 --duration 5 --loader wrk --workers auto

bench-tools: ## vegeta (constant-rate load, Go) into .cache/bin through the Go module proxy
	test -x .cache/bin/vegeta || GOTOOLCHAIN=local GOBIN=$(CURDIR)/.cache/bin go install github.com/tsenart/vegeta/v12@v12.13.0

bench-webhook: bench-build bench-tools ## admission reviews per second, latency at fixed rates, memory, time to ready
	node .cache/bench/bench/webhook.js --workers 1
	node .cache/bench/bench/webhook.js --workers 1 --inject-threads 0
	node .cache/bench/bench/webhook.js --workers auto

bench-agent: bench-build ## agent start, memory, renewal CPU, probe throughput
	node .cache/bench/bench/agent.js

bench-mesh: bench-build ## the mesh push: 1,000 Services x 10 endpoints, 1,000 proxies, EndpointSlice changes
	node .cache/bench/bench/mesh-push.js --changes 10

bench-cluster: bench-build control-plane ## cluster mode at rest with 200 namespaces, TokenReview cache under a burst
	node .cache/bench/bench/cluster.js

verify: lint control-plane ## lint, type-check, helm lint, every test (generated-file drift included)
	$(NODE_BIN)/tsc --noEmit
	.cache/bin/helm lint --strict charts/mooring
	$(MAKE) test
