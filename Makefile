# Mooring: `make help` lists the targets.
SHELL := bash
# Node 24 LTS: this machine's own when it is >= 24, else the pinned one in .cache/node (hack/node.sh).
NODE_DIR := $(shell bash hack/node.sh)
ifeq ($(NODE_DIR),)
$(error no Node >= 24 and hack/node.sh could not install one into .cache/node)
endif
export PATH := $(NODE_DIR):$(PATH)
NODE_BIN := node_modules/.bin
# Defined before the rules that name it (a prerequisite list is expanded where it is read).
# The echo app of the netns and node tests, run by Node from .cache/echo-build (outside .cache/images, which `make images` rebuilds).
ECHO_JS := .cache/echo-build/echo.js
# Empty: the default of every command (server.dataDir, .data).
DATA_DIR ?=
LISTEN ?= 127.0.0.1:8443
ADMIN_LISTEN ?= 127.0.0.1:9090

PHONY_NODE := node-binaries images harness e2e-node cluster-up cluster-down
.PHONY: $(PHONY_NODE) help deps addon build run demo test unit e2e netns verify lint format golden webhook-config control-plane jaeger bench-build bench-tools bench-inject bench-ca bench-webhook bench-agent bench-cluster bench-original-dst bench-mesh bench-pods bench-proxy bench-http2 bench-telemetry bench-traffic crds chart-crds

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

node_modules: package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

deps: node_modules ## install the npm dependencies (npm ci)

addon: node_modules ## build the original-destination addon (native/original-dst) if its C source or Node changed
	bash native/original-dst/build.sh

# dist/ is compiled again only when a source, a folder of src/ (a file added, moved or removed)
# or the TypeScript settings changed; tsc itself is incremental (.cache/tsbuildinfo).
BUILT := dist/.built
$(BUILT): package-lock.json tsconfig.json tsconfig.build.json $(shell find src -name '*.ts' -o -type d) | node_modules
	$(NODE_BIN)/tsc -p tsconfig.build.json
	@touch $@

build: $(BUILT) addon ## compile TypeScript into dist/ (only when something changed) and build the addon

run: build ## run Mooring: `mooring serve` in local mode, its CA in .data (DATA_DIR, LISTEN, ADMIN_LISTEN)
	node bin/mooring.js serve $(if $(DATA_DIR),--data-dir $(DATA_DIR) )--listen $(LISTEN) --admin-listen $(ADMIN_LISTEN)

control-plane: ## build (once, cached in .cache/bin) kube-apiserver, etcd, kubectl and helm
	bash test/e2e/harness/build-control-plane.sh

crds: ## fetch (once, cached in .cache/crds) the Istio and Gateway API CRDs of the traffic tests, from their Go modules
	bash test/e2e/harness/fetch-crds.sh

chart-crds: crds ## copy the CRDs of crds.install from .cache/crds into charts/mooring/charts/crds/crd-files (commit them; test/chart/crds.test.ts checks them against upstream)
	bash hack/chart-crds.sh

jaeger: ## build (once, cached in .cache/jaeger) Jaeger, the trace store of the tracing tests
	bash test/e2e/harness/build-jaeger.sh

test: build $(ECHO_JS) control-plane jaeger crds node-binaries images harness ## run every test: unit, golden, HTTP, integration, netns (root), e2e, e2e on a node (root)
	$(NODE_BIN)/jest --selectProjects unit netns e2e
	$(NODE_BIN)/jest --selectProjects node --runInBand

unit: build control-plane crds ## run the tests that need no root and no apiserver (the chart tests use .cache/bin/helm, and .cache/crds for the chart's copies of the CRDs)
	$(NODE_BIN)/jest --selectProjects unit

$(ECHO_JS): test/e2e-node/echo/echo.ts test/e2e-node/echo/tsconfig.json | node_modules
	$(NODE_BIN)/tsc -p test/e2e-node/echo/tsconfig.json

demo: build $(ECHO_JS) ## (root) two sidecars in network namespaces carry a request with mTLS: the answer, the wire, the metrics
	$(NODE_BIN)/tsc -p test/netns/tsconfig.demo.json
	MOORING_ROOT=$(CURDIR) node .cache/demo/test/netns/demo.js $(DEMO_FLAGS)

netns: build $(ECHO_JS) control-plane jaeger ## run the network-namespace tests (root): `mooring iptables`, the original destination, sidecars in Pods' namespaces (local and cluster mode), their traces, metrics, access log and graph

	$(NODE_BIN)/jest --selectProjects netns

e2e: build control-plane jaeger crds ## run the end-to-end tests against a real kube-apiserver and etcd
	$(NODE_BIN)/jest --selectProjects e2e --runInBand

node-binaries: ## build (once, cached in .cache/bin) kubelet, kube-scheduler, kube-controller-manager, and the control plane
	bash test/e2e/harness/build-control-plane.sh --node

images: build control-plane ## the Mooring, echo and pause images of the node (hack/build-images.sh; cached in .cache/images)
	bash hack/build-images.sh

harness: node_modules ## compile the e2e harness into .cache/harness (make cluster-up, the node tests' crash fixture)
	$(NODE_BIN)/tsc -p test/e2e/harness/tsconfig.json

e2e-node: build crds node-binaries images harness ## run the end-to-end tests on a real node (root: containerd, kubelet, network namespaces)
	$(NODE_BIN)/jest --selectProjects node --runInBand

cluster-up: build crds node-binaries images harness ## start a node cluster with Mooring installed, left running (README: Development)
	node .cache/harness/test/e2e/harness/cluster.js up

cluster-down: harness ## stop the cluster of make cluster-up, leaving the machine as it was
	node .cache/harness/test/e2e/harness/cluster.js down

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

bench-proxy: bench-build bench-tools ## the sidecar pair with mTLS beside direct and a pair of nginx (needs wrk, nginx, libnginx-mod-stream)
	node .cache/bench/bench/proxy.js --rounds 2 --duration 10

bench-http2: bench-build ## Node's own HTTP/2 server against its HTTP/1.1 one over TLS: CPU per request at fixed rates (would HTTP/2 between sidecars help?)
	node .cache/bench/bench/http2-cost.js --rates 1000,4000 --seconds 10 --rounds 2

bench-pods: bench-build bench-tools $(ECHO_JS) control-plane node-binaries images harness ## (root) sidecars in real Pods on the harness's node: container memory as the kubelet counts it, latency and CPU at 1,000 requests/s beside direct and beside the nginx pair in the same network namespaces (needs nginx)
	node .cache/bench/bench/pods.js --rounds 2 --duration 10

bench-traffic: bench-build ## traffic management in the proxy: route selection over 1,000 rules, memory of 1,000 Services with rules
	node .cache/bench/bench/traffic.js

bench-cluster: bench-build control-plane ## cluster mode at rest with 200 namespaces, TokenReview cache under a burst
	node .cache/bench/bench/cluster.js

bench-telemetry: bench-build bench-tools ## the sidecar pair with tracing at 1% and 100% and with the access log, against all off
	node .cache/bench/bench/proxy.js --telemetry off,trace1,trace100,log --duration 5 --rounds 7 --rate 300

bench-original-dst: bench-build ## cost per call of reading a redirected connection's original destination (root)
	node .cache/bench/bench/original-dst.js

verify: lint control-plane ## lint, type-check, helm lint, every test (generated-file drift included)
	$(NODE_BIN)/tsc --noEmit
	.cache/bin/helm lint --strict charts/mooring
	$(MAKE) test
