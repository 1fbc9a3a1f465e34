# One command builds everything: `make` (the daemon and every plugin as
# plugins/<name>.wasm). `make test` runs the whole test suite; `make demo`
# runs the daemon on an example.

BUNDLED := configfile http fixedconf tcp icmpecho romana
# Built for the tests and as the documentation's example; not bundled.
EXTRA   := guest-hostile guest-wrong-world guest-mismatched guest-future-version guest-prober \
           guest-bad-grants guest-bad-paths guest-hostile-health guest-impostor guest-newer \
           routes-txt any-port
WASM_DIR := target/wasm32-wasip2/release

.PHONY: all build plugins test test-deps lang-examples demo bench lint
all: build

build: plugins
	cargo build

plugins:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	cargo build --target wasm32-wasip2 --release $(addprefix -p ,$(BUNDLED) $(EXTRA))
	@# Copied only when changed: the daemon's build records their digests
	@# (host/build.rs) and would be rebuilt for a new modification time.
	@for p in $(BUNDLED); do cmp -s $(WASM_DIR)/$$p.wasm plugins/$$p.wasm || cp $(WASM_DIR)/$$p.wasm plugins/$$p.wasm; done
	@ls -l $(addprefix plugins/,$(addsuffix .wasm,$(BUNDLED)))

test: build test-deps lang-examples
	cargo test -p vpcrouter -p vpcrouter-plugin-sdk -p romana-topology

# Plugins written in other languages, as an outside author builds them:
# examples/csv-routes in Python (componentize-py from PyPI), and
# examples/tcp-latency in JavaScript (componentize-js from npm). Each is
# tens of megabytes (an interpreter inside), so they are compiled ahead of
# time into the cache the tests load them from, as an install would.
PY_PLUGIN := examples/csv-routes/csv_routes.wasm
JS_PLUGIN := examples/tcp-latency/tcp_latency.wasm
LANG_CACHE := target/lang-plugin-cache

lang-examples: $(PY_PLUGIN) $(JS_PLUGIN) build
	target/debug/vpcrouter plugin compile $(PY_PLUGIN) $(JS_PLUGIN) --plugin-cache-dir $(LANG_CACHE)

$(PY_PLUGIN): examples/csv-routes/app.py wit/v0.1.0/plugin.wit
	@command -v componentize-py >/dev/null 2>&1 || pip install --quiet 'componentize-py==0.25.1'
	cd examples/csv-routes && componentize-py -d ../../wit/v0.1.0 -w config-plugin componentize app -o csv_routes.wasm

$(JS_PLUGIN): examples/tcp-latency/health.js examples/tcp-latency/package.json examples/tcp-latency/package-lock.json wit/v0.1.0/plugin.wit
	cd examples/tcp-latency && npm ci --silent --no-audit --no-fund && npm run --silent build

# The EC2 tests run against moto's EC2 server (started by each test on
# 127.0.0.1); the status page is tested in Debian's headless Chromium; the
# romana plugin against a real etcd (Debian's etcd-server, one per test).
test-deps:
	@python3 -c 'import moto.server' 2>/dev/null || pip install --quiet 'moto[server]'
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } || \
		echo "note: no chromium; the status-page browser test will be skipped"
	@command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null; }


demo: build
	cargo run --quiet --example demo

bench: build test-deps lang-examples
	cargo bench --bench plugins
	cargo bench --bench health
	cargo bench --bench planner
	cargo bench --bench failover
	cargo bench --bench romana
	cargo bench --bench sandbox
	cargo bench --bench ha
	cargo bench --bench reload
	cargo bench --bench languages

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
