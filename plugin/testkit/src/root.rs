//! The one rule for privileged tests: they are `#[ignore = "needs root: ..."]`, so a plain
//! `cargo test` lists them as ignored; `make test` (`--include-ignored`) runs them, and
//! without root they fail here, naming the prerequisite. They never pass without running.

/// Fails the test unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (network namespaces, routes): run `make test` \
         (or `cargo test -- --include-ignored`) as root"
    );
}
