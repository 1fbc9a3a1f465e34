# One command builds everything: `make` (the daemon and every plugin as
# plugins/<name>.wasm). `make test` runs the whole test suite; `make demo`
# runs the daemon on an example. To install: `make release`, then
# `make install [PREFIX=/usr/local] [DESTDIR=...]`, or `make deb`.

BUNDLED := configfile http fixedconf tcp icmpecho httpcheck webhook romana
# Built for the tests and as the documentation's example; not bundled.
EXTRA   := guest-hostile guest-wrong-world guest-mismatched guest-future-version guest-prober \
           guest-bad-grants guest-bad-paths guest-hostile-health guest-impostor guest-newer \
           guest-health-file guest-hostile-notifier routes-txt any-port chat-notifier
WASM_DIR := target/wasm32-wasip2/release

.PHONY: all build plugins test test-deps test-tools lang-examples demo bench lint release install deb
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

# The daemon's tests in a cargo run of their own: built with the other
# crates, shared dependencies (anyhow, wasmtime above it) would get other
# features and compile a second time. tests/tools likewise.
#
# The package the tests check is made from the debug build: they check the
# packaging (files, modes, the unit, the packaged daemon at work), not the
# optimiser, and a test run is spared a second build of every crate (the
# dist profile, ~6.5 min here). `make deb` packages the dist build.
test: build test-deps test-tools lang-examples
	$(MAKE) --no-print-directory deb DEB_BUILD=build DIST_BIN=target/debug/vpcrouter
	cargo test -p vpcrouter
	cargo test -p vpcrouter-plugin-sdk -p romana-topology

# What the tests need that the daemon does not (tests/tools).
test-tools:
	cargo build -p test-tools

# The daemon as installed: the dist profile (Cargo.toml), fast code in
# about the time of a debug build.
DIST_BIN := target/dist/vpcrouter

release: plugins
	cargo build --profile dist -p vpcrouter

# Installs what `make release` built (run that first, as yourself): the
# daemon, the bundled plugins where `-m NAME` finds them
# (PREFIX/lib/vpcrouter/plugins), the plugin author's guide
# (PREFIX/share/doc/vpcrouter/PLUGINS.md), manual pages and shell completions.
PREFIX ?= /usr/local
ROOT := $(DESTDIR)$(PREFIX)

install:
	@test -x $(DIST_BIN) || { echo "$(DIST_BIN) is missing: run make release first"; exit 1; }
	install -D -s -m 755 $(DIST_BIN) $(ROOT)/bin/vpcrouter
	install -d $(ROOT)/lib/vpcrouter/plugins $(ROOT)/share/man/man1
	install -m 644 $(addprefix plugins/,$(addsuffix .wasm,$(BUNDLED))) $(ROOT)/lib/vpcrouter/plugins/
	install -D -m 644 PLUGINS.md $(ROOT)/share/doc/vpcrouter/PLUGINS.md
	$(DIST_BIN) manpages $(ROOT)/share/man/man1
	gzip -9nf $(ROOT)/share/man/man1/vpcrouter*.1
	install -d $(ROOT)/share/bash-completion/completions $(ROOT)/share/zsh/vendor-completions \
		$(ROOT)/share/fish/vendor_completions.d
	$(DIST_BIN) completions bash > $(ROOT)/share/bash-completion/completions/vpcrouter
	$(DIST_BIN) completions zsh > $(ROOT)/share/zsh/vendor-completions/_vpcrouter
	$(DIST_BIN) completions fish > $(ROOT)/share/fish/vendor_completions.d/vpcrouter.fish

# A Debian package of the install (PREFIX=/usr) with the systemd unit and
# /etc/default/vpcrouter from examples/deploy/systemd: target/debian/*.deb.
DEB_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB := target/debian/vpcrouter_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_ROOT := target/debian/root

# What `deb` packages: `release` (the dist build) unless told otherwise.
DEB_BUILD ?= release

deb: $(DEB_BUILD)
	rm -rf $(DEB_ROOT) && mkdir -p $(DEB_ROOT)/DEBIAN
	$(MAKE) --no-print-directory install DESTDIR=$(DEB_ROOT) PREFIX=/usr
	install -D -m 644 examples/deploy/systemd/vpcrouter.service $(DEB_ROOT)/usr/lib/systemd/system/vpcrouter.service
	install -D -m 644 examples/deploy/systemd/vpcrouter.default $(DEB_ROOT)/etc/default/vpcrouter
	install -D -m 644 examples/deploy/debian/copyright $(DEB_ROOT)/usr/share/doc/vpcrouter/copyright
	install -m 755 examples/deploy/debian/postinst examples/deploy/debian/prerm examples/deploy/debian/postrm $(DEB_ROOT)/DEBIAN/
	echo /etc/default/vpcrouter > $(DEB_ROOT)/DEBIAN/conffiles
	sed -e 's/@VERSION@/$(DEB_VERSION)/' -e 's/@ARCH@/$(DEB_ARCH)/' \
		-e "s/@DEPENDS@/$$(examples/deploy/debian/depends $(DEB_ROOT)/usr/bin/vpcrouter)/" \
		-e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1)/" \
		examples/deploy/debian/control > $(DEB_ROOT)/DEBIAN/control
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $(DEB)
	@ls -l $(DEB)

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

# The EC2 and events-queue tests run against moto's EC2 and SQS (started by each test on
# 127.0.0.1); the status page is tested in Debian's headless Chromium; the
# romana plugin against a real etcd (Debian's etcd-server, one per test);
# the package is checked with Debian's dpkg-dev and systemd tools.
test-deps:
	@# moto serves EC2, SQS, SNS, EventBridge and CloudWatch; cbor2 lets the
	@# tests' wrapper (tests/common/moto_server.py) speak CloudWatch's CBOR.
	@python3 -c 'import moto.server, cbor2' 2>/dev/null || pip install --quiet 'moto[server]' cbor2
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } || \
		echo "note: no chromium; the status-page browser test will be skipped"
	@command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null; }
	@# `make deb` (dpkg-shlibdeps) and the package test (systemd-analyze verify).
	@command -v dpkg-shlibdeps >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 && \
		[ -x /bin/kill ] || \
		{ apt-get update -qq && apt-get install -y -qq dpkg-dev systemd procps >/dev/null; }


demo: build
	target/debug/vpcrouter demo --plugin-dir plugins

bench: build test-deps test-tools lang-examples deb
	cargo bench --bench plugins
	cargo bench --bench health
	cargo bench --bench planner
	cargo bench --bench failover
	cargo bench --bench romana
	cargo bench --bench sandbox
	cargo bench --bench coplugins
	cargo bench --bench ha
	cargo bench --bench reload
	cargo bench --bench languages
	cargo bench --bench install
	host/benches/first_load.sh $(DIST_BIN)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
