//! `cni-conformance check`: runs the catalogue against targets and reports.
//!
//! ```text
//! cni-conformance check --list
//! cni-conformance check --target FILE [--target FILE ...] [--only ID,ID]
//!                       [--format table|json|junit|markdown] [--out FILE]
//! cni-conformance check --all [--targets-dir DIR] [...]   every target file in the dir
//! ```
//! The exit status is non-zero when a MUST check fails (or cannot be run) on any target.

use std::fs;
use std::path::PathBuf;

use crate::error::{Context, Error, Result};
use crate::harness::paths;
use crate::spec::checks::run_target;
use crate::spec::report::{self, TargetReport};
use crate::spec::target::Target;

pub const USAGE: &str = "usage: cni-conformance check --list | \
     (--target FILE... | --all [--targets-dir DIR]) [--only ID,...] \
     [--format table|json|junit|markdown] [--out FILE]";

/// The directory of the shipped target files.
pub fn targets_dir() -> PathBuf {
    paths::workspace_root().join("conformance").join("targets")
}

/// Every `*.json` in `dir`, sorted by file name.
pub fn target_files(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs the targets and renders the reports in `format`; returns (text, MUST failures).
pub fn run_targets(targets: &[Target], only: &[String], format: &str) -> Result<(String, usize)> {
    let mut reports = Vec::new();
    for t in targets {
        eprintln!(
            "cni-conformance: checking {} ({})",
            t.name,
            t.binary.display()
        );
        let (versions, runs) = run_target(t, only);
        let r = TargetReport::new(t, versions, runs);
        eprintln!("cni-conformance: {}", r.summary());
        reports.push(r);
    }
    let must: usize = reports.iter().map(TargetReport::must_failures).sum();
    let text = match format {
        "table" => reports
            .iter()
            .map(report::table)
            .collect::<Vec<_>>()
            .join("\n"),
        "json" => {
            serde_json::to_string_pretty(&report::json(&reports)).context("encode JSON")? + "\n"
        }
        "junit" => report::junit(&reports),
        "markdown" => format!(
            "{}\n{}",
            report::markdown_matrix(&reports),
            report::markdown_failures(&reports)
        ),
        other => return Err(Error::new(format!("unknown format {other:?}\n{USAGE}"))),
    };
    Ok((text, must))
}

pub fn main(args: &[String]) -> Result<()> {
    let mut files = Vec::new();
    let mut all = false;
    let mut dir = targets_dir();
    let mut format = "table".to_string();
    let mut out: Option<PathBuf> = None;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    let need = |v: Option<&String>, flag: &str| {
        v.cloned()
            .ok_or_else(|| Error::new(format!("{flag} needs a value\n{USAGE}")))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => {
                print!("{}", report::catalogue_table());
                return Ok(());
            }
            "--target" => files.push(PathBuf::from(need(it.next(), "--target")?)),
            "--all" => all = true,
            "--targets-dir" => dir = PathBuf::from(need(it.next(), "--targets-dir")?),
            "--format" => format = need(it.next(), "--format")?,
            "--out" => out = Some(PathBuf::from(need(it.next(), "--out")?)),
            "--only" => only.extend(
                need(it.next(), "--only")?
                    .split(',')
                    .map(|s| s.trim().to_string()),
            ),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(Error::new(format!("unknown argument {other:?}\n{USAGE}"))),
        }
    }
    if all {
        files.extend(target_files(&dir)?);
    }
    if files.is_empty() {
        return Err(Error::new(USAGE));
    }
    if !crate::harness::lab::is_root() {
        return Err(Error::missing(
            "cni-conformance check needs root (it creates network namespaces with ip netns)",
        ));
    }
    let targets = files
        .iter()
        .map(|f| Target::load(f))
        .collect::<Result<Vec<_>>>()?;
    let (text, must) = run_targets(&targets, &only, &format)?;
    match out {
        Some(path) => {
            fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
            eprintln!("cni-conformance: report written to {}", path.display());
        }
        None => print!("{text}"),
    }
    if must > 0 {
        return Err(Error::new(format!("{must} MUST check(s) failed")));
    }
    Ok(())
}
