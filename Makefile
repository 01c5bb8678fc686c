# Mooring: `make help` lists the targets.
SHELL := bash
NODE_BIN := node_modules/.bin
DATA_DIR ?= ca/dev-store

.PHONY: help deps build run test unit e2e netns verify lint format golden bench webhook-config control-plane

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

node_modules: package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

deps: node_modules ## install the npm dependencies (npm ci)

build: node_modules ## compile TypeScript into dist/
	$(NODE_BIN)/tsc -p tsconfig.build.json

run: build ## run Mooring: `mooring serve` in local mode with its embedded CA in $(DATA_DIR)
	node bin/mooring.js serve --data-dir $(DATA_DIR) --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090

control-plane: ## build (once, cached in .cache/bin) kube-apiserver, etcd, kubectl and helm
	bash test/e2e/harness/build-control-plane.sh

test: build control-plane ## run every test: unit, golden, HTTP, integration, netns (root), e2e
	$(NODE_BIN)/jest --selectProjects unit netns e2e

unit: build ## run the tests that need no root and no control plane
	$(NODE_BIN)/jest --selectProjects unit

netns: build ## run the network-namespace test of `mooring iptables` (root)
	$(NODE_BIN)/jest --selectProjects netns

e2e: build control-plane ## run the end-to-end tests against a real kube-apiserver and etcd
	$(NODE_BIN)/jest --selectProjects e2e --runInBand

golden: node_modules ## rewrite the golden files of test/golden from the current code
	REFRESH_GOLDEN=1 $(NODE_BIN)/jest --selectProjects unit test/golden

lint: node_modules ## eslint (type-checked) and prettier check
	$(NODE_BIN)/eslint .
	$(NODE_BIN)/prettier --check .

format: node_modules ## rewrite files with prettier
	$(NODE_BIN)/prettier --write .

bench: build ## run the benchmarks of bench/ (numbers go to bench/RESULTS.md by hand)
	@echo "see bench/RESULTS.md for each benchmark's command"

verify: lint ## lint, type-check, every test, and generated-file drift
	$(NODE_BIN)/tsc --noEmit
	$(MAKE) test
