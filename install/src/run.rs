//! Install and uninstall: plan every change first (reading only), then, unless `--dry-run`,
//! apply it. Nothing is written when any binary fails its VERSION check; a network that
//! cannot be given the entry (a malformed file, a cniVersion the plugins cannot serve, a
//! hold not below the IPAM's reuse delay, ...) is reported `not ready` and left alone while
//! the others are done ([`Outcome`]). Binaries go in before the conflists that name them, and
//! come out after; an uninstall goes on past a failure where it safely can, and reports every
//! one. [`reconcile_conf_dir`] is the configuration-directory half alone, for a caller that
//! runs it again whenever the directory changes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tombstone_cni::state::{StateDir, encode_stem};

use crate::confdir::{self, Listed, Target, Verdict};
use crate::conflist::{self, Edit, Shape};
use crate::diff::unified;
use crate::error::{Context, InstallError, Kind, Result, collect};
use crate::files::{self, mode_of, read_opt, resolve, write_atomic};
use crate::host;
use crate::options::Options;

/// Binaries the installer puts in place; the last one only when it is there to install.
pub const REQUIRED_BINARIES: [&str; 2] = ["tombstone", "tombstone-ipam"];
pub const OPTIONAL_BINARIES: [&str; 1] = ["tombstone-ipvlan"];
/// The installer's own state (backups of converted `.conf` files), on the node.
pub const STATE_PATH: &str = "/var/lib/tombstone-install";
const MANIFEST: &str = "manifest";
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// What the installer did, kept so that the uninstall can undo it exactly.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    binaries: BTreeSet<String>,
    converted: Vec<Converted>,
    systemd: bool,
    /// Symbolic links of the conf dir replaced by the edited file.
    #[serde(default)]
    links: Vec<Link>,
}

/// A configuration file that was a symbolic link (file name in the conf dir, the link's
/// target as it was written): the uninstall puts the link back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Link {
    file: String,
    target: PathBuf,
}

/// The exit code of a run that did all it could but left some network `not ready`.
pub const NOT_READY_EXIT: i32 = 3;

/// What a run that did not fail left undone.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// One line per file, or network, reported `not ready`.
    pub not_ready: Vec<String>,
    /// The networks that have the entry once the run is done (`file: network`), edited or
    /// found in place.
    pub managed: Vec<String>,
    /// Configuration files written (or moved, or linked again) by the run.
    pub changed: usize,
}

impl Outcome {
    /// 0, or [`NOT_READY_EXIT`].
    pub fn exit_code(&self) -> i32 {
        if self.not_ready.is_empty() {
            0
        } else {
            NOT_READY_EXIT
        }
    }
}

/// A single-plugin `.conf` turned into a `.conflist` (file names in the conf dir).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Converted {
    conf: String,
    conflist: String,
    mode: u32,
}

fn orig_stem(conf: &str) -> String {
    format!("orig-{}", encode_stem(conf))
}

fn wrote_stem(conflist: &str) -> String {
    format!("wrote-{}", encode_stem(conflist))
}

/// One planned file change.
enum Change {
    Write {
        path: PathBuf,
        shown: PathBuf,
        old: Option<String>,
        new: String,
        mode: u32,
    },
    Remove {
        path: PathBuf,
        shown: PathBuf,
        old: String,
    },
    /// The file becomes a symbolic link to `target` again.
    Link {
        path: PathBuf,
        shown: PathBuf,
        target: PathBuf,
    },
}

impl Change {
    fn diff(&self) -> String {
        match self {
            Change::Write {
                shown, old, new, ..
            } => {
                let label = format!("{}", shown.display());
                let from = if old.is_some() { &label } else { "/dev/null" };
                unified(from, &label, old.as_deref().unwrap_or(""), new)
            }
            Change::Remove { shown, old, .. } => {
                unified(&format!("{}", shown.display()), "/dev/null", old, "")
            }
            Change::Link { shown, target, .. } => format!(
                "{}: a symbolic link to {} again\n",
                shown.display(),
                target.display()
            ),
        }
    }

    /// The path as the node names it.
    fn shown(&self) -> &Path {
        match self {
            Change::Write { shown, .. }
            | Change::Remove { shown, .. }
            | Change::Link { shown, .. } => shown,
        }
    }

    fn apply(&self) -> Result<()> {
        match self {
            Change::Write {
                path, new, mode, ..
            } => write_atomic(path, new.as_bytes(), *mode, |_| Ok(())),
            Change::Remove { path, .. } => files::remove(path),
            Change::Link { path, target, .. } => files::symlink_atomic(path, target),
        }
    }
}

/// The paths of one run, all under `--root`.
pub(crate) struct Paths {
    pub(crate) root: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) conf: PathBuf,
    state: PathBuf,
}

impl Paths {
    pub(crate) fn new(o: &Options) -> Result<Paths> {
        let root =
            fs::canonicalize(&o.root).context(format_args!("--root {}", o.root.display()))?;
        if !root.is_dir() {
            return Err(InstallError::refused("is not a directory")
                .context(format_args!("--root {}", o.root.display())));
        }
        Ok(Paths {
            bin: resolve(&root, &o.bin_dir, true)?,
            conf: resolve(&root, &o.conf_dir, true)?,
            state: resolve(&root, Path::new(STATE_PATH), true)?,
            root,
        })
    }

    /// A file on the node, under the root: its directories resolved as the node sees them,
    /// the file itself not followed (a link there is replaced, never written through).
    pub(crate) fn file(&self, node_path: &str) -> Result<PathBuf> {
        resolve(&self.root, Path::new(node_path), false)
    }

    fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    /// A path under the root, as the node names it (for messages and diffs).
    pub(crate) fn shown(&self, p: &Path) -> PathBuf {
        match p.strip_prefix(&self.root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => p.to_path_buf(),
        }
    }
}

/// Runs the installer; progress goes to `out`. An error means nothing more was changed
/// after the step that failed (and nothing at all when it failed during planning).
pub fn run(o: &Options, out: &mut dyn Write) -> Result<Outcome> {
    let p = Paths::new(o)?;
    if p.root != Path::new("/") {
        say(out, format!("root: {}", p.root.display()));
    }
    if o.uninstall {
        uninstall(o, &p, out)
    } else {
        install(o, &p, out)
    }
}

/// The configuration directory alone, planned and applied: the entry in every network the
/// runtime loads (or every one named), the manifest updated for the uninstall. What a loop
/// watching the directory calls each time it changes.
pub fn reconcile_conf_dir(o: &Options, out: &mut dyn Write) -> Result<Outcome> {
    let p = Paths::new(o)?;
    let plan = plan_conf_dir(o, &p, out)?;
    if o.dry_run {
        show_diffs(out, &plan.changes);
    } else {
        record_install(o, &p, &[], &plan)?;
        apply_conflists(&plan.changes, out)?;
    }
    Ok(Outcome {
        changed: if o.dry_run { 0 } else { plan.changes.len() },
        not_ready: plan.not_ready,
        managed: plan.managed,
    })
}

fn say(out: &mut dyn Write, line: String) {
    let _ = writeln!(out, "{line}");
}

// ---------------------------------------------------------------------------------------
// Configuration files

pub(crate) struct ConfFile {
    /// The file in the conf dir (a symbolic link, when `link` says so).
    pub(crate) path: PathBuf,
    mode: u32,
    /// The link's target as written, when the file is a symbolic link.
    link: Option<PathBuf>,
}

/// The conf dir as the runtime lists it: per file, where it is and what it holds.
pub(crate) struct ConfDir {
    pub(crate) files: Vec<ConfFile>,
    pub(crate) listed: Vec<Listed>,
}

impl ConfDir {
    fn shown(&self, p: &Paths, i: usize) -> String {
        p.shown(&self.files[i].path).display().to_string()
    }

    /// This file with new contents, same mode (a symbolic link becomes a file).
    fn rewrite(&self, p: &Paths, i: usize, new: String) -> Change {
        Change::Write {
            shown: p.shown(&self.files[i].path),
            path: self.files[i].path.clone(),
            old: Some(self.listed[i].text.clone()),
            new,
            mode: self.files[i].mode,
        }
    }
}

/// Every configuration file the runtime would look at (`.conf`, `.conflist`, `.json`),
/// sorted, parsed: one that cannot be read or parsed is listed with its error. A symbolic
/// link is read through, its target resolved under the root.
pub(crate) fn read_confs(p: &Paths) -> Result<ConfDir> {
    let dir = &p.conf;
    let mut out = ConfDir {
        files: Vec::new(),
        listed: Vec::new(),
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).context(format_args!("cannot list {}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !n.starts_with('.')
                && [".conf", ".conflist", ".json"]
                    .iter()
                    .any(|ext| n.ends_with(ext))
        })
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let link = if meta.file_type().is_symlink() {
            Some(fs::read_link(&path).context(format_args!("cannot read {}", path.display()))?)
        } else if meta.file_type().is_file() {
            None
        } else {
            continue;
        };
        // A read that fails is this file's failure (not ready), not the run's.
        let real = match &link {
            Some(_) => resolve(&p.root, &p.shown(&path), true),
            None => Ok(path.clone()),
        };
        let bytes = real
            .clone()
            .and_then(|real| match (read_opt(&real)?, &link) {
                (Some(b), _) => Ok(b),
                (None, Some(t)) => Err(InstallError::config(format!(
                    "a symbolic link to {}, which is not there",
                    t.display()
                ))),
                (None, None) => Err(InstallError::config("vanished while being read")),
            });
        let real = real.unwrap_or_else(|_| path.clone());
        let text = bytes
            .and_then(|b| String::from_utf8(b).map_err(|_| InstallError::config("not UTF-8 text")));
        let net = text.clone().and_then(|t| conflist::parse(&t));
        out.files.push(ConfFile {
            mode: mode_of(&real).unwrap_or(0o644),
            path,
            link,
        });
        out.listed.push(Listed {
            name,
            text: text.unwrap_or_default(),
            net,
        });
    }
    Ok(out)
}

/// The networks of `text`: the file's own and, in a Multus file, each inline delegate.
fn networks_in(text: &str, top: &conflist::Network) -> Vec<conflist::Network> {
    let mut out = vec![top.clone()];
    if let Some(m) = top.multus() {
        out.extend((0..m.delegates).filter_map(|d| conflist::parse_delegate(text, d).ok()));
    }
    out
}

fn check_named(o: &Options, dir: &ConfDir, conf_dir: &Path) -> Result<()> {
    let names: BTreeSet<String> = dir
        .listed
        .iter()
        .filter_map(|l| l.net.as_ref().ok().map(|n| networks_in(&l.text, n)))
        .flatten()
        .map(|n| n.name)
        .collect();
    for n in &o.networks {
        if !names.contains(n) {
            return Err(InstallError::refused(format!(
                "no network named {n:?} in {}",
                conf_dir.display()
            ))
            .detail("nothing was changed"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Binaries

struct Binary {
    name: String,
    src: PathBuf,
    dest: PathBuf,
    bytes: Vec<u8>,
    unchanged: bool,
}

/// The binaries to install, each read and VERSION-checked; none with `--skip-binaries`.
fn plan_binaries(o: &Options, p: &Paths) -> Result<Vec<Binary>> {
    if o.skip_binaries {
        return Ok(Vec::new());
    }
    let no_dir = "cannot find this program's directory (use --from)";
    let from = match &o.from {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context(no_dir)?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| InstallError::new(Kind::Io, no_dir))?,
    };
    let mut out = Vec::new();
    let optional = OPTIONAL_BINARIES
        .iter()
        .filter(|n| from.join(n).is_file())
        .copied();
    for name in REQUIRED_BINARIES.iter().copied().chain(optional) {
        let src = from.join(name);
        let bytes = fs::read(&src)
            .context(format_args!("cannot read {}", src.display()))
            .map_err(|e| e.detail("build with `cargo build --release` or pass --from DIR"))?;
        check_version(&src)?;
        let dest = p.bin.join(name);
        let unchanged = mode_of(&dest) == Some(0o755)
            && read_opt(&dest).ok().flatten().as_deref() == Some(&bytes[..]);
        out.push(Binary {
            name: name.to_string(),
            src,
            dest,
            bytes,
            unchanged,
        });
    }
    Ok(out)
}

/// Runs `path` as a CNI plugin with `CNI_COMMAND=VERSION`: it must answer with JSON that has
/// `supportedVersions`.
pub fn check_version(path: &Path) -> Result<()> {
    let fail = |why: String| {
        InstallError::new(Kind::Binary, why)
            .context(format_args!("{} failed its VERSION check", path.display()))
    };
    let mut child = Command::new(path)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > VERSION_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer in {VERSION_TIMEOUT:?}")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let mut stdout = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = std::io::Read::read_to_end(&mut s, &mut stdout);
    }
    if !status.success() {
        return Err(fail(format!("it exited with {status}")));
    }
    let v: Value =
        serde_json::from_slice(&stdout).map_err(|_| fail("its output is not JSON".into()))?;
    match v.get("supportedVersions") {
        Some(Value::Array(a)) if !a.is_empty() => Ok(()),
        _ => Err(fail("no supportedVersions in its output".into())),
    }
}

// ---------------------------------------------------------------------------------------
// Install

fn install(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<Outcome> {
    // Plan, reading only.
    let lists = plan_conf_dir(o, p, out)?;
    let binaries = plan_binaries(o, p)?;
    let host_changes = plan_host_files(o, p, out)?;
    let outcome = Outcome {
        not_ready: lists.not_ready.clone(),
        managed: lists.managed.clone(),
        changed: if o.dry_run { 0 } else { lists.changes.len() },
    };

    show_binaries(o, p, &binaries, out);
    if o.dry_run {
        show_diffs(out, host_changes.iter().chain(&lists.changes));
        say(out, "dry run: nothing was written".into());
        return Ok(outcome);
    }

    // Apply: binaries, host files, the state that lets uninstall undo a conversion, then the
    // configuration files.
    install_binaries(p, &binaries, out)?;
    apply_host_files(&host_changes, out)?;
    record_install(o, p, &binaries, &lists)?;
    apply_conflists(&lists.changes, out)?;
    if o.systemd && !host_changes.is_empty() {
        systemctl(
            p,
            out,
            &[&["daemon-reload"], &["enable", "--now", host::TIMER_UNIT]],
        );
    }
    say(out, done(&outcome));
    Ok(outcome)
}

fn done(outcome: &Outcome) -> String {
    match outcome.not_ready.len() {
        0 => "done".into(),
        n => format!("done, but {n} not ready (see the `not ready` lines)"),
    }
}

/// The configuration-file side of an install.
#[derive(Default)]
struct ConflistPlan {
    changes: Vec<Change>,
    /// Each conversion, with the original text and the list written in its place.
    conversions: Vec<(Converted, String, String)>,
    /// Lists rewritten in place (file name, new text): a converted one's record of what was
    /// written follows.
    rewrites: Vec<(String, String)>,
    /// Symbolic links replaced by their edited file.
    links: Vec<Link>,
    not_ready: Vec<String>,
    managed: Vec<String>,
}

/// The installer's manifest, read only (none yet: empty).
fn read_manifest(p: &Paths) -> Result<Manifest> {
    if p.state.is_dir() {
        load_manifest(&StateDir::open(&p.state)?)
    } else {
        Ok(Manifest::default())
    }
}

/// The entry added to (or updated in) every network the runtime loads that is IPvlan-based
/// (or every one named); single-plugin files converted. A network that cannot be given the
/// entry is reported `not ready` and left as it is.
fn plan_conf_dir(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<ConflistPlan> {
    let dir = read_confs(p)?;
    check_named(o, &dir, &p.conf)?;
    let manifest = read_manifest(p)?;
    let mut plan = ConflistPlan::default();
    // The text of each file as edited so far (a Multus file may take several edits).
    let mut texts: BTreeMap<usize, String> = BTreeMap::new();
    for v in confdir::select(&p.shown(&p.conf), &dir.listed, &o.networks) {
        match v {
            Verdict::Skipped { file, why, .. } => {
                say(out, format!("skipped    {} ({why})", dir.shown(p, file)))
            }
            Verdict::Ignored { file, why } => {
                say(out, format!("ignored    {} ({why})", dir.shown(p, file)))
            }
            Verdict::NotReady { file, why } => not_ready(&mut plan, out, &dir.shown(p, file), &why),
            Verdict::Warning(w) => say(out, format!("warning: {w}")),
            Verdict::Edit(t) => {
                let shown = dir.shown(p, t.file);
                let managed = format!("{shown}: {}", t.net.name);
                match plan_edit(o, p, &dir, &manifest, t, &mut texts, &mut plan, out) {
                    Ok(()) => plan.managed.push(managed),
                    Err(e) => not_ready(&mut plan, out, &shown, &e.to_string()),
                }
            }
        }
    }
    for (i, new) in texts {
        if new == dir.listed[i].text {
            continue;
        }
        if let Some(target) = &dir.files[i].link {
            say(
                out,
                format!(
                    "note: {} is a symbolic link to {}: it becomes a file of its own with the \
                     entry (the target is left as it is; --uninstall puts the link back)",
                    dir.shown(p, i),
                    target.display()
                ),
            );
            plan.links.push(Link {
                file: dir.listed[i].name.clone(),
                target: target.clone(),
            });
        }
        plan.rewrites
            .push((dir.listed[i].name.clone(), new.clone()));
        plan.changes.push(dir.rewrite(p, i, new));
    }
    Ok(plan)
}

fn not_ready(plan: &mut ConflistPlan, out: &mut dyn Write, shown: &str, why: &str) {
    say(out, format!("not ready  {shown}: {why}"));
    plan.not_ready.push(format!("{shown}: {why}"));
}

/// One network's edit, into `texts`; a conversion into `plan`. An error: that network is not
/// ready.
#[allow(clippy::too_many_arguments)]
fn plan_edit(
    o: &Options,
    p: &Paths,
    dir: &ConfDir,
    manifest: &Manifest,
    t: Target,
    texts: &mut BTreeMap<usize, String>,
    plan: &mut ConflistPlan,
    out: &mut dyn Write,
) -> Result<()> {
    let name = &t.net.name;
    if let Some(why) = t.net.version_problem() {
        return Err(InstallError::config(format!(
            "network {name:?} not given the entry: {why}"
        )));
    }
    if let Some(why) = t.net.hold_problem(&o.plugin, &o.new_entry()) {
        return Err(
            InstallError::config(format!("network {name:?} not given the entry: {why}"))
                .detail("choose a smaller --hold-seconds or a longer reuseAfterSeconds"),
        );
    }
    if let Some(via) = &t.via {
        say(out, format!("note: network {name:?}: {via}"));
    }
    let shown = dir.shown(p, t.file);
    match t.net.shape {
        Shape::List => {
            let text = texts
                .get(&t.file)
                .cloned()
                .unwrap_or_else(|| dir.listed[t.file].text.clone());
            let net = conflist::parse_at(&text, &t.net.path)?;
            let options = if net.tombstone_index().is_some() {
                o.plugin.clone()
            } else {
                o.new_entry()
            };
            if net.misplaced() {
                say(
                    out,
                    format!(
                        "misplaced  {shown} (network {name:?}: the tombstone entry was before \
                         the main plugin {:?}, so its DEL would run too late: moved right \
                         after it)",
                        net.main_type().unwrap_or("")
                    ),
                );
            }
            match conflist::add(&text, &net, &options)? {
                Edit::Unchanged => say(out, format!("unchanged  {shown}")),
                Edit::Changed(new) => {
                    texts.insert(t.file, new);
                }
            }
            Ok(())
        }
        Shape::Single => plan_conversion(o, p, dir, manifest, &t, plan, out),
    }
}

/// A single-plugin `.conf` becomes a `.conflist` beside it; the `.conf` goes. A `.conf`
/// written again after the installer converted it is converted again over the installer's
/// own list.
fn plan_conversion(
    o: &Options,
    p: &Paths,
    dir: &ConfDir,
    manifest: &Manifest,
    t: &Target,
    plan: &mut ConflistPlan,
    out: &mut dyn Write,
) -> Result<()> {
    let c = &dir.files[t.file];
    let file_name = &dir.listed[t.file].name;
    let text = &dir.listed[t.file].text;
    let list_name = format!("{}.conflist", confdir::stem(file_name));
    let list_path = p.conf.join(&list_name);
    let old = if fs::symlink_metadata(&list_path).is_ok() {
        if !manifest.converted.iter().any(|m| m.conflist == list_name) {
            return Err(InstallError::refused(format!(
                "cannot convert it to a list: {} exists and is not the installer's",
                p.shown(&list_path).display()
            )));
        }
        say(
            out,
            format!(
                "note: {} was written again since it was converted: converting it again over {}",
                p.shown(&c.path).display(),
                p.shown(&list_path).display()
            ),
        );
        read_opt(&list_path)?.map(|b| String::from_utf8_lossy(&b).into_owned())
    } else {
        None
    };
    let new = conflist::convert(text, &t.net, &o.new_entry())?;
    plan.changes.push(Change::Write {
        shown: p.shown(&list_path),
        path: list_path,
        old,
        new: new.clone(),
        mode: c.mode,
    });
    plan.changes.push(Change::Remove {
        shown: p.shown(&c.path),
        path: c.path.clone(),
        old: text.clone(),
    });
    plan.conversions.push((
        Converted {
            conf: file_name.clone(),
            conflist: list_name,
            mode: c.mode,
        },
        text.clone(),
        new,
    ));
    Ok(())
}

/// The protocol name, and with `--systemd` the sweep's units: those not already in place.
fn plan_host_files(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<Vec<Change>> {
    let mut host_files = vec![(p.file(host::RT_PROTOS_PATH)?, host::rt_protos())];
    if o.systemd {
        let state_dir = o.plugin.get("stateDir").and_then(Value::as_str);
        host_files.push((
            p.file(host::SERVICE_PATH)?,
            host::service(&o.bin_dir, state_dir),
        ));
        host_files.push((p.file(host::TIMER_PATH)?, host::timer()));
    }
    let mut changes = Vec::new();
    for (path, text) in host_files {
        let old = read_opt(&path)?.map(|b| String::from_utf8_lossy(&b).into_owned());
        if old.as_deref() == Some(text.as_str()) && mode_of(&path) == Some(0o644) {
            say(out, format!("unchanged  {}", p.shown(&path).display()));
        } else {
            changes.push(Change::Write {
                shown: p.shown(&path),
                path,
                old,
                new: text,
                mode: 0o644,
            });
        }
    }
    Ok(changes)
}

fn show_binaries(o: &Options, p: &Paths, binaries: &[Binary], out: &mut dyn Write) {
    for b in binaries.iter().filter(|b| b.unchanged || o.dry_run) {
        let verb = if b.unchanged {
            "unchanged "
        } else {
            "would install"
        };
        say(
            out,
            format!(
                "{verb} {} (from {})",
                p.shown(&b.dest).display(),
                b.src.display()
            ),
        );
    }
}

fn show_diffs<'a>(out: &mut dyn Write, changes: impl IntoIterator<Item = &'a Change>) {
    for c in changes {
        let _ = write!(out, "{}", c.diff());
    }
}

fn install_binaries(p: &Paths, binaries: &[Binary], out: &mut dyn Write) -> Result<()> {
    for b in binaries.iter().filter(|b| !b.unchanged) {
        write_atomic(&b.dest, &b.bytes, 0o755, |_| Ok(()))
            .context(format_args!("installing {}", p.shown(&b.dest).display()))?;
        say(out, format!("installed  {}", p.shown(&b.dest).display()));
    }
    Ok(())
}

fn apply_host_files(changes: &[Change], out: &mut dyn Write) -> Result<()> {
    for c in changes {
        c.apply()
            .context(format_args!("writing {}", c.shown().display()))?;
        say(out, format!("wrote      {}", c.shown().display()));
    }
    Ok(())
}

/// The manifest and, for each conversion, the original and the list written, so that the
/// uninstall can undo exactly this.
fn record_install(o: &Options, p: &Paths, binaries: &[Binary], lists: &ConflistPlan) -> Result<()> {
    let recording = format!("recording the install in {}", p.shown(&p.state).display());
    let state = StateDir::open(&p.state).context(&recording)?;
    let _lock = state.lock(MANIFEST).context(&recording)?;
    let mut manifest = load_manifest(&state)?;
    let before = manifest.clone();
    manifest
        .binaries
        .extend(binaries.iter().map(|b| b.name.clone()));
    manifest.systemd |= o.systemd;
    for (conv, orig, wrote) in &lists.conversions {
        state
            .write(&orig_stem(&conv.conf), orig.as_bytes(), true)
            .context(&recording)?;
        state
            .write(&wrote_stem(&conv.conflist), wrote.as_bytes(), true)
            .context(&recording)?;
        manifest.converted.retain(|c| c.conflist != conv.conflist);
        manifest.converted.push(conv.clone());
    }
    for l in &lists.links {
        if !manifest.links.iter().any(|m| m.file == l.file) {
            manifest.links.push(l.clone());
        }
    }
    for (file_name, new) in &lists.rewrites {
        if manifest.converted.iter().any(|c| &c.conflist == file_name) {
            state
                .write(&wrote_stem(file_name), new.as_bytes(), true)
                .context(&recording)?;
        }
    }
    if manifest != before || state.read(MANIFEST).context(&recording)?.is_none() {
        save_manifest(&state, &manifest).context(&recording)?;
    }
    Ok(())
}

fn apply_conflists(changes: &[Change], out: &mut dyn Write) -> Result<()> {
    for c in changes {
        c.apply().context("updating the network configurations")?;
        let shown = c.shown().display();
        match c {
            Change::Write { old: Some(_), .. } => say(out, format!("updated    {shown}")),
            Change::Write { old: None, .. } => say(out, format!("wrote      {shown}")),
            Change::Remove { .. } => say(
                out,
                format!("moved      {shown} (converted; its original is kept for --uninstall)"),
            ),
            Change::Link { .. } => say(out, format!("linked     {shown}")),
        }
    }
    Ok(())
}

fn load_manifest(state: &StateDir) -> Result<Manifest> {
    match state.read(MANIFEST)? {
        None => Ok(Manifest::default()),
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            InstallError::state(e.to_string())
                .context(format_args!(
                    "{}/{MANIFEST}.json is damaged",
                    state.path().display()
                ))
                .detail("move it aside to continue")
        }),
    }
}

fn save_manifest(state: &StateDir, m: &Manifest) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(m)
        .map_err(|e| InstallError::state(format!("cannot encode the manifest: {e}")))?;
    bytes.push(b'\n');
    Ok(state.write(MANIFEST, &bytes, true)?)
}

/// On the node itself (root `/`) with systemd running, applies unit changes; elsewhere says
/// what to run. A failure is a warning: the files are in place.
fn systemctl(p: &Paths, out: &mut dyn Write, calls: &[&[&str]]) {
    let running = Path::new("/run/systemd/system").is_dir();
    for args in calls {
        let line = format!("systemctl {}", args.join(" "));
        if !p.is_host() || !running {
            say(
                out,
                format!("to do      {line} (systemd is not running here)"),
            );
            continue;
        }
        match Command::new("systemctl")
            .args(*args)
            .stdin(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => say(out, format!("ran        {line}")),
            Ok(s) => say(out, format!("warning: {line} exited with {s}")),
            Err(e) => say(out, format!("warning: cannot run {line}: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Uninstall

fn uninstall(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<Outcome> {
    // Plan, reading only.
    let confs = read_confs(p)?;
    check_named(o, &confs, &p.conf)?;
    let state = if p.state.is_dir() {
        Some(StateDir::open(&p.state)?)
    } else {
        None
    };
    let manifest = match &state {
        Some(s) => load_manifest(s)?,
        None => Manifest::default(),
    };
    let lists = plan_restores(o, p, &confs, state.as_ref(), &manifest, out)?;
    let binaries = plan_binary_removal(p, &manifest, &lists.still_used, out);
    let host_gone = plan_host_removal(p, &lists.still_used, out)?;
    let outcome = Outcome {
        not_ready: lists.not_ready.clone(),
        ..Outcome::default()
    };

    if o.dry_run {
        show_diffs(out, lists.restores.iter().flat_map(|r| &r.changes));
        for b in &binaries {
            say(out, format!("would remove {}", p.shown(b).display()));
        }
        show_diffs(out, &host_gone);
        say(out, "dry run: nothing was written".into());
        return Ok(outcome);
    }

    // Apply, going on past a failure: configuration files first; the binaries and host files
    // only once no configuration file names them any more; then the state, for what was done.
    let mut failures = Vec::new();
    let restored = restore_conflists(&lists.restores, out, &mut failures);
    let conflists_failed = !failures.is_empty();
    let removed = if conflists_failed {
        Removed::default()
    } else {
        remove_binaries_and_host_files(p, &binaries, &host_gone, out, &mut failures)
    };
    if let Some(state) = &state
        && let Err(e) = update_state(p, state, manifest, &restored, &removed, out)
    {
        failures.push(e);
    }
    collect("uninstall", failures).map_err(|e| {
        if conflists_failed {
            e.detail(
                "the binaries and host files were left in place: fix the configuration \
                 files and run --uninstall again",
            )
        } else {
            e
        }
    })?;
    say(out, done(&outcome));
    Ok(outcome)
}

/// The configuration-file side of an uninstall.
#[derive(Default)]
struct RestorePlan {
    restores: Vec<Restore>,
    /// Types still named by a network once the entries are gone: those binaries stay.
    still_used: BTreeSet<String>,
    not_ready: Vec<String>,
}

/// What undoes the install in one configuration file: changes applied in order (a restored
/// `.conf` is written before its list goes), and what of the manifest it settles.
#[derive(Default)]
struct Restore {
    changes: Vec<Change>,
    settles: Option<Converted>,
    /// The file name of a link put back.
    relinks: Option<String>,
}

/// Every `tombstone` entry of the networks selected in `text`: the file's own and its Multus
/// delegates'. `None` when there is none.
fn without_entries(o: &Options, text: &str, top: &conflist::Network) -> Result<Option<String>> {
    let selected = |n: &conflist::Network| o.networks.is_empty() || o.networks.contains(&n.name);
    let mut now = text.to_string();
    let paths: Vec<Vec<conflist::Step>> = networks_in(text, top)
        .into_iter()
        .filter(|n| selected(n) && n.tombstone_index().is_some())
        .map(|n| n.path)
        .collect();
    if paths.is_empty() {
        return Ok(None);
    }
    for path in paths {
        let net = conflist::parse_at(&now, &path)?;
        if let Edit::Changed(new) = conflist::remove(&now, &net)? {
            now = new;
        }
    }
    Ok(Some(now))
}

fn plan_restores(
    o: &Options,
    p: &Paths,
    confs: &ConfDir,
    state: Option<&StateDir>,
    manifest: &Manifest,
    out: &mut dyn Write,
) -> Result<RestorePlan> {
    let mut plan = RestorePlan::default();
    for (i, (c, l)) in confs.files.iter().zip(&confs.listed).enumerate() {
        let shown = confs.shown(p, i);
        let net = match &l.net {
            Ok(n) => n,
            Err(e) => {
                let why = format!(
                    "malformed network configuration: {e}; left as it is, and the binaries \
                     stay in case it names them"
                );
                say(out, format!("not ready  {shown}: {why}"));
                plan.not_ready.push(format!("{shown}: {why}"));
                plan.still_used.extend(
                    REQUIRED_BINARIES
                        .iter()
                        .chain(OPTIONAL_BINARIES.iter())
                        .map(|s| s.to_string()),
                );
                continue;
            }
        };
        let Some(new) =
            without_entries(o, &l.text, net).context(format_args!("cannot edit {shown}"))?
        else {
            plan.still_used.extend(net.referenced_types());
            continue;
        };
        let conv = manifest.converted.iter().find(|m| m.conflist == l.name);
        if let (Some(conv), Some(state)) = (conv, state) {
            if let Some(r) = plan_unconversion(p, c, &l.text, conv, state, &mut plan.still_used)? {
                plan.restores.push(r);
                continue;
            }
            say(
                out,
                format!(
                    "note: {shown} was edited after it was converted from {}: removing the \
                     entry only, it stays a list",
                    conv.conf
                ),
            );
        }
        if let Ok(net) = conflist::parse(&new) {
            plan.still_used.extend(net.referenced_types());
        }
        let mut r = Restore {
            settles: conv.filter(|_| state.is_some()).cloned(),
            ..Restore::default()
        };
        // A link the install replaced comes back when the file is its target's text again.
        let link = manifest.links.iter().find(|k| k.file == l.name);
        let target_text = link.and_then(|k| {
            let target = if k.target.is_absolute() {
                k.target.clone()
            } else {
                p.shown(&p.conf).join(&k.target)
            };
            let real = resolve(&p.root, &target, true).ok()?;
            read_opt(&real).ok().flatten()
        });
        match (link, target_text) {
            (Some(k), Some(t)) if t == new.as_bytes() => {
                r.changes.push(Change::Link {
                    shown: p.shown(&c.path),
                    path: c.path.clone(),
                    target: k.target.clone(),
                });
                r.relinks = Some(k.file.clone());
            }
            (link, _) => {
                if let Some(k) = link {
                    say(
                        out,
                        format!(
                            "note: {shown} differs from {} once the entry is out: it stays a \
                             file",
                            k.target.display()
                        ),
                    );
                    r.relinks = Some(k.file.clone());
                }
                r.changes.push(confs.rewrite(p, i, new));
            }
        }
        plan.restores.push(r);
    }
    Ok(plan)
}

/// A conversion whose list nobody edited since: the original `.conf` comes back and the list
/// goes. `None` when the list was edited (or a backup is missing): the list stays.
fn plan_unconversion(
    p: &Paths,
    c: &ConfFile,
    text: &str,
    conv: &Converted,
    state: &StateDir,
    still_used: &mut BTreeSet<String>,
) -> Result<Option<Restore>> {
    let restoring = format!("cannot restore {}", p.conf.join(&conv.conf).display());
    let wrote = state
        .read(&wrote_stem(&conv.conflist))
        .context(&restoring)?;
    let orig = state.read(&orig_stem(&conv.conf)).context(&restoring)?;
    let (Some(wrote), Some(orig)) = (wrote, orig) else {
        return Ok(None);
    };
    if wrote != text.as_bytes() {
        return Ok(None);
    }
    let orig = String::from_utf8(orig).map_err(|_| {
        InstallError::state(format!("the backup of {} is not text", conv.conf)).context(&restoring)
    })?;
    let conf_path = p.conf.join(&conv.conf);
    if fs::symlink_metadata(&conf_path).is_ok() {
        return Err(InstallError::refused("it exists again")
            .context(&restoring)
            .detail("nothing was changed"));
    }
    if let Ok(net) = conflist::parse(&orig) {
        still_used.extend(net.referenced_types());
    }
    Ok(Some(Restore {
        changes: vec![
            Change::Write {
                shown: p.shown(&conf_path),
                path: conf_path,
                old: None,
                new: orig,
                mode: conv.mode,
            },
            Change::Remove {
                shown: p.shown(&c.path),
                path: c.path.clone(),
                old: text.to_string(),
            },
        ],
        settles: Some(conv.clone()),
        relinks: None,
    }))
}

/// The installer's binaries (the known ones and those it recorded) that are there and that no
/// remaining network names.
fn plan_binary_removal(
    p: &Paths,
    manifest: &Manifest,
    still_used: &BTreeSet<String>,
    out: &mut dyn Write,
) -> Vec<PathBuf> {
    let mut names: BTreeSet<String> = REQUIRED_BINARIES
        .iter()
        .chain(OPTIONAL_BINARIES.iter())
        .map(|s| s.to_string())
        .collect();
    names.extend(manifest.binaries.iter().cloned());
    let mut gone = Vec::new();
    for name in &names {
        let path = p.bin.join(name);
        if fs::symlink_metadata(&path).is_err() {
            continue;
        }
        if still_used.contains(name) {
            say(
                out,
                format!(
                    "kept       {} (a network still uses type {name:?})",
                    p.shown(&path).display()
                ),
            );
        } else {
            gone.push(path);
        }
    }
    gone
}

/// The protocol name and the sweep's units, as the installer wrote them; they go only with
/// the plugin itself.
fn plan_host_removal(
    p: &Paths,
    still_used: &BTreeSet<String>,
    out: &mut dyn Write,
) -> Result<Vec<Change>> {
    let mut gone = Vec::new();
    if still_used.contains(conflist::TOMBSTONE_TYPE) {
        return Ok(gone);
    }
    for node_path in [host::RT_PROTOS_PATH, host::TIMER_PATH, host::SERVICE_PATH] {
        let path = p.file(node_path)?;
        let Some(old) = read_opt(&path)? else {
            continue;
        };
        let old = String::from_utf8_lossy(&old).into_owned();
        if old.starts_with(host::MARKER) {
            gone.push(Change::Remove {
                shown: p.shown(&path),
                path,
                old,
            });
        } else {
            say(
                out,
                format!(
                    "kept       {} (not as the installer wrote it)",
                    p.shown(&path).display()
                ),
            );
        }
    }
    Ok(gone)
}

/// Applies every restore; a failed one stops only its own file. Returns the conversions
/// settled; failures go to `failures`.
fn restore_conflists(
    restores: &[Restore],
    out: &mut dyn Write,
    failures: &mut Vec<InstallError>,
) -> Settled {
    let mut settled = Settled::default();
    'files: for r in restores {
        for c in &r.changes {
            if let Err(e) = c.apply() {
                failures.push(e.context("restoring the network configurations"));
                continue 'files;
            }
            match c {
                Change::Write { .. } => say(out, format!("restored   {}", c.shown().display())),
                Change::Remove { .. } => say(out, format!("removed    {}", c.shown().display())),
                Change::Link { .. } => say(out, format!("linked     {}", c.shown().display())),
            }
        }
        settled.converted.extend(r.settles.clone());
        settled.links.extend(r.relinks.clone());
    }
    settled
}

/// What the restored configuration files settle in the manifest.
#[derive(Default)]
struct Settled {
    converted: Vec<Converted>,
    /// File names of the links dealt with.
    links: Vec<String>,
}

/// What the second half of an uninstall took away.
#[derive(Default)]
struct Removed {
    binaries: Vec<PathBuf>,
    timer: bool,
}

/// Removes every binary and host file planned (the timer stopped first), going on past a
/// failure.
fn remove_binaries_and_host_files(
    p: &Paths,
    binaries: &[PathBuf],
    host_gone: &[Change],
    out: &mut dyn Write,
    failures: &mut Vec<InstallError>,
) -> Removed {
    let mut removed = Removed::default();
    let stops_timer = host_gone
        .iter()
        .any(|c| c.shown() == Path::new(host::TIMER_PATH));
    if stops_timer {
        systemctl(p, out, &[&["disable", "--now", host::TIMER_UNIT]]);
    }
    for b in binaries {
        match files::remove(b) {
            Ok(()) => {
                say(out, format!("removed    {}", p.shown(b).display()));
                removed.binaries.push(b.clone());
            }
            Err(e) => failures.push(e.context("removing the binaries")),
        }
    }
    for c in host_gone {
        match c.apply() {
            Ok(()) => {
                say(out, format!("removed    {}", c.shown().display()));
                removed.timer |= c.shown() == Path::new(host::TIMER_PATH);
            }
            Err(e) => failures.push(e.context("removing the host files")),
        }
    }
    if stops_timer {
        systemctl(p, out, &[&["daemon-reload"]]);
    }
    removed
}

/// The manifest without what was undone; the whole state directory when nothing is left.
fn update_state(
    p: &Paths,
    state: &StateDir,
    mut manifest: Manifest,
    settled: &Settled,
    removed: &Removed,
    out: &mut dyn Write,
) -> Result<()> {
    let updating = format!("updating {}", p.shown(state.path()).display());
    let lock = state.lock(MANIFEST).context(&updating)?;
    manifest
        .converted
        .retain(|c| !settled.converted.contains(c));
    manifest.links.retain(|l| !settled.links.contains(&l.file));
    manifest
        .binaries
        .retain(|n| !removed.binaries.iter().any(|b| b.ends_with(n)));
    manifest.systemd &= !removed.timer;
    if manifest.converted.is_empty() && manifest.binaries.is_empty() && manifest.links.is_empty() {
        drop(lock);
        fs::remove_dir_all(state.path())
            .context(format_args!("cannot remove {}", state.path().display()))?;
        say(
            out,
            format!("removed    {}", p.shown(state.path()).display()),
        );
        return Ok(());
    }
    let mut failures = Vec::new();
    for conv in &settled.converted {
        for stem in [orig_stem(&conv.conf), wrote_stem(&conv.conflist)] {
            if let Err(e) = files::remove(&state.path().join(format!("{stem}.json"))) {
                failures.push(e);
            }
        }
    }
    if let Err(e) = save_manifest(state, &manifest) {
        failures.push(e);
    }
    drop(lock);
    collect(&updating, failures)
}
