# The two set-up commands of the README:
#   make demo   the seed scenario on a real IPvlan kernel, before/after table
#   make test   every test: unit, network-namespace (root), VM (real IPvlan)
CARGO ?= cargo

.PHONY: demo test deps build lint bench

deps:
	bash conformance/vm/install-deps.sh

build:
	$(CARGO) build --release --workspace --bins

demo: deps build
	$(CARGO) run --quiet --release -p cni-conformance -- demo

test: deps build
	$(CARGO) test --release --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

bench: build
	$(CARGO) run --quiet --release -p tombstone --example bench
