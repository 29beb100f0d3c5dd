//! The spec runner: it judges any CNI plugin binary against the spec, knowing nothing of the
//! plugins of this repository. A [`target`] (binary + config) is run by the [`runner`] the way
//! libcni runs plugins, every [`checks`] rule is judged, and a [`report`] printed; [`check_cli`]
//! is its command line (`cni-conformance check`).

pub mod check_cli;
pub mod checks;
pub mod report;
pub mod runner;
pub mod target;
