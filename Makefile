# The two set-up commands of the README:
#   make demo   the seed scenario on a real IPvlan kernel, before/after table
#   make test   every test: unit, network-namespace (root), VM (real IPvlan)
#   make image  the DaemonSet's image, an OCI archive built offline (install/README.md)
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: demo test deps build lint bench image

# Builds target the host tuple explicitly and link our binaries statically
# (.cargo/config.toml): they land in target/<host tuple>/release/.
RELEASE_DIR := target/$(shell rustc -vV | sed -n 's/^host: //p')/release

deps:
	bash conformance/vm/install-deps.sh
	bash install/ci-deps.sh

build:
	$(CARGO) build --release --workspace --bins
	@echo "binaries in $(RELEASE_DIR)/"

# The DaemonSet's image: an OCI archive built by buildah with no engine and no registry
# (install/image.sh prints where, its size and the build's times).
image:
	bash install/image.sh

demo: deps build
	$(CARGO) run --quiet --release -p cni-conformance -- demo

# Every test runs. Those needing privileges or external tools are `#[ignore = "needs ..."]`
# (a plain `cargo test` lists them as ignored); here they are included, and a missing
# prerequisite fails them. `--show-output` keeps what passing tests print, so that the log
# check below (no test says it skipped, cargo ignored none) sees it. Nothing is printed after
# cargo's summary when the check passes.
TEST_LOG := target/make-test.log

test: deps build
	@mkdir -p $(dir $(TEST_LOG))
	set -o pipefail; $(CARGO) test --release --workspace -- --include-ignored --show-output 2>&1 | tee $(TEST_LOG)
	@bash .ci/check-test-log $(TEST_LOG)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# Benchmarks (root) of the release binaries, beside the reference plugins where one exists.
bench: deps
	$(CARGO) build --release --workspace --bins --examples
	$(RELEASE_DIR)/examples/tombstone-bench
	$(RELEASE_DIR)/examples/tombstone-bench conntrack
	$(RELEASE_DIR)/examples/ipam-bench
	bash plugin/bench/startup.sh
