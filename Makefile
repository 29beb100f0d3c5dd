# The two set-up commands of the README:
#   make demo   the seed scenario on a real IPvlan kernel, before/after table
#   make test   every test: unit, network-namespace (root), VM (real IPvlan)
CARGO ?= cargo

.PHONY: demo test deps build release lint bench

# Release binaries for nodes are statically linked (like the reference Go plugins): no
# dependency on the node's glibc, and about 0.3 ms less start-up per invocation.
TRIPLE := $(shell rustc -vV | sed -n 's/^host: //p')
STATIC := RUSTFLAGS="-C target-feature=+crt-static"
RELEASE_DIR := target/$(TRIPLE)/release

deps:
	bash conformance/vm/install-deps.sh
	bash install/ci-deps.sh

build:
	$(CARGO) build --release --workspace --bins

demo: deps build
	$(CARGO) run --quiet --release -p cni-conformance -- demo

test: deps build
	$(CARGO) test --release --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

release:
	$(STATIC) $(CARGO) build --release --target $(TRIPLE) --workspace --bins
	@echo "release binaries in $(RELEASE_DIR)/"

# Benchmarks (root) of the release binaries, beside the reference plugins where one exists.
bench: deps
	$(STATIC) $(CARGO) build --release --target $(TRIPLE) --workspace --bins --examples
	$(RELEASE_DIR)/examples/tombstone-bench
	$(RELEASE_DIR)/examples/ipam-bench
