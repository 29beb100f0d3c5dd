//! Install and uninstall: plan every change first (reading only), then, unless `--dry-run`,
//! apply it. Nothing is written when any configuration file is malformed or any binary fails
//! its VERSION check. Binaries go in before the conflists that name them, and come out after;
//! an uninstall goes on past a failure where it safely can, and reports every one.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tombstone_cni::state::{StateDir, encode_stem};

use crate::conflist::{self, Edit, Shape};
use crate::diff::unified;
use crate::error::{Context, InstallError, Kind, Result, collect};
use crate::files::{self, mode_of, read_opt, under, write_atomic};
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
        }
    }

    /// The path as the node names it.
    fn shown(&self) -> &Path {
        match self {
            Change::Write { shown, .. } | Change::Remove { shown, .. } => shown,
        }
    }

    fn apply(&self) -> Result<()> {
        match self {
            Change::Write {
                path, new, mode, ..
            } => write_atomic(path, new.as_bytes(), *mode, |_| Ok(())),
            Change::Remove { path, .. } => files::remove(path),
        }
    }
}

/// The paths of one run, all under `--root`.
struct Paths {
    root: PathBuf,
    bin: PathBuf,
    conf: PathBuf,
    state: PathBuf,
}

impl Paths {
    fn new(o: &Options) -> Result<Paths> {
        let root =
            std::path::absolute(&o.root).context(format_args!("--root {}", o.root.display()))?;
        Ok(Paths {
            bin: under(&root, &o.bin_dir),
            conf: under(&root, &o.conf_dir),
            state: under(&root, Path::new(STATE_PATH)),
            root,
        })
    }

    fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    /// A path under the root, as the node names it (for messages and diffs).
    fn shown(&self, p: &Path) -> PathBuf {
        match p.strip_prefix(&self.root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => p.to_path_buf(),
        }
    }
}

/// Runs the installer; progress goes to `out`. An error means nothing more was changed
/// after the step that failed (and nothing at all when it failed during planning).
pub fn run(o: &Options, out: &mut dyn Write) -> Result<()> {
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

fn say(out: &mut dyn Write, line: String) {
    let _ = writeln!(out, "{line}");
}

// ---------------------------------------------------------------------------------------
// Configuration files

struct ConfFile {
    path: PathBuf,
    file_name: String,
    text: String,
    mode: u32,
    symlink: bool,
    net: conflist::Network,
}

impl ConfFile {
    /// This file with new contents, same mode.
    fn rewrite(&self, p: &Paths, new: String) -> Change {
        Change::Write {
            shown: p.shown(&self.path),
            path: self.path.clone(),
            old: Some(self.text.clone()),
            new,
            mode: self.mode,
        }
    }
}

/// Every configuration file the runtime would load (`.conf`, `.conflist`, `.json`), sorted,
/// parsed. Any malformed one is an error naming every such file.
fn read_confs(dir: &Path) -> Result<Vec<ConfFile>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
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
    let mut confs = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let symlink = meta.file_type().is_symlink();
        if !symlink && !meta.file_type().is_file() {
            continue;
        }
        let bytes = read_opt(&path)?.unwrap_or_default();
        let parsed = String::from_utf8(bytes)
            .map_err(|_| InstallError::config("not UTF-8 text"))
            .and_then(|text| conflist::parse(&text).map(|net| (text, net)));
        match parsed {
            Ok((text, net)) => confs.push(ConfFile {
                mode: fs::metadata(&path)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                    .unwrap_or(0o644),
                path,
                file_name: name,
                text,
                symlink,
                net,
            }),
            Err(e) => errors.push(
                e.context("malformed network configuration")
                    .context(path.display()),
            ),
        }
    }
    collect(format_args!("reading {}", dir.display()), errors)
        .map_err(|e| e.detail("nothing was changed; fix or remove the file and run again"))?;
    Ok(confs)
}

fn wanted(o: &Options, c: &ConfFile) -> bool {
    if o.networks.is_empty() {
        c.net.is_ipvlan_based()
    } else {
        o.networks.contains(&c.net.name)
    }
}

fn check_named(o: &Options, confs: &[ConfFile], conf_dir: &Path) -> Result<()> {
    for n in &o.networks {
        if !confs.iter().any(|c| &c.net.name == n) {
            return Err(InstallError::refused(format!(
                "no network named {n:?} in {}",
                conf_dir.display()
            ))
            .detail("nothing was changed"));
        }
    }
    Ok(())
}

fn refuse_symlink(c: &ConfFile) -> Result<()> {
    if c.symlink {
        Err(
            InstallError::refused("is a symbolic link: not replacing it")
                .context(c.path.display())
                .detail(
                    "edit its target, or point --conf-dir at the target's directory; \
                     nothing was changed",
                ),
        )
    } else {
        Ok(())
    }
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

fn install(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<()> {
    // Plan, reading only.
    let confs = read_confs(&p.conf)?;
    check_named(o, &confs, &p.conf)?;
    let lists = plan_conflists(o, p, &confs, out)?;
    let binaries = plan_binaries(o, p)?;
    let host_changes = plan_host_files(o, p, out)?;

    show_binaries(o, p, &binaries, out);
    if o.dry_run {
        show_diffs(out, host_changes.iter().chain(&lists.changes));
        say(out, "dry run: nothing was written".into());
        return Ok(());
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
    say(out, "done".into());
    Ok(())
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
}

/// The entry added to (or updated in) every wanted network; single-plugin files converted.
fn plan_conflists(
    o: &Options,
    p: &Paths,
    confs: &[ConfFile],
    out: &mut dyn Write,
) -> Result<ConflistPlan> {
    let mut plan = ConflistPlan::default();
    for c in confs {
        if !wanted(o, c) {
            if o.networks.is_empty() {
                say(
                    out,
                    format!(
                        "skipped    {} (network {:?}: main plugin {:?} is not IPvlan-based)",
                        p.shown(&c.path).display(),
                        c.net.name,
                        c.net.main_type().unwrap_or("")
                    ),
                );
            }
            continue;
        }
        match c.net.shape {
            Shape::List => match conflist::add(&c.text, &c.net, &o.plugin)
                .context(format_args!("cannot edit {}", c.path.display()))?
            {
                Edit::Unchanged => say(out, format!("unchanged  {}", p.shown(&c.path).display())),
                Edit::Changed(new) => {
                    refuse_symlink(c)?;
                    plan.rewrites.push((c.file_name.clone(), new.clone()));
                    plan.changes.push(c.rewrite(p, new));
                }
            },
            Shape::Single => plan_conversion(o, p, c, &mut plan)?,
        }
    }
    Ok(plan)
}

/// A single-plugin `.conf` becomes a `.conflist` beside it; the `.conf` goes.
fn plan_conversion(o: &Options, p: &Paths, c: &ConfFile, plan: &mut ConflistPlan) -> Result<()> {
    refuse_symlink(c)?;
    let stem = c
        .file_name
        .rsplit_once('.')
        .map_or(c.file_name.as_str(), |(s, _)| s);
    let list_name = format!("{stem}.conflist");
    let list_path = p.conf.join(&list_name);
    let converting = format!("cannot convert {} to a list", c.path.display());
    if fs::symlink_metadata(&list_path).is_ok() {
        return Err(
            InstallError::refused(format!("{} exists", list_path.display()))
                .context(converting)
                .detail("nothing was changed"),
        );
    }
    let new = conflist::convert(&c.text, &c.net, &o.plugin).context(&converting)?;
    plan.changes.push(Change::Write {
        shown: p.shown(&list_path),
        path: list_path,
        old: None,
        new: new.clone(),
        mode: c.mode,
    });
    plan.changes.push(Change::Remove {
        shown: p.shown(&c.path),
        path: c.path.clone(),
        old: c.text.clone(),
    });
    plan.conversions.push((
        Converted {
            conf: c.file_name.clone(),
            conflist: list_name,
            mode: c.mode,
        },
        c.text.clone(),
        new,
    ));
    Ok(())
}

/// The protocol name, and with `--systemd` the sweep's units: those not already in place.
fn plan_host_files(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<Vec<Change>> {
    let mut host_files = vec![(
        under(&p.root, Path::new(host::RT_PROTOS_PATH)),
        host::rt_protos(),
    )];
    if o.systemd {
        let state_dir = o.plugin.get("stateDir").and_then(Value::as_str);
        host_files.push((
            under(&p.root, Path::new(host::SERVICE_PATH)),
            host::service(&o.bin_dir, state_dir),
        ));
        host_files.push((under(&p.root, Path::new(host::TIMER_PATH)), host::timer()));
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

fn uninstall(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<()> {
    // Plan, reading only.
    let confs = read_confs(&p.conf)?;
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

    if o.dry_run {
        show_diffs(out, lists.restores.iter().flat_map(|r| &r.changes));
        for b in &binaries {
            say(out, format!("would remove {}", p.shown(b).display()));
        }
        show_diffs(out, &host_gone);
        say(out, "dry run: nothing was written".into());
        return Ok(());
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
    say(out, "done".into());
    Ok(())
}

/// The configuration-file side of an uninstall.
#[derive(Default)]
struct RestorePlan {
    restores: Vec<Restore>,
    /// Types still named by a network once the entries are gone: those binaries stay.
    still_used: BTreeSet<String>,
}

/// What undoes the install in one configuration file: changes applied in order (a restored
/// `.conf` is written before its list goes), and the conversion it settles, if any.
struct Restore {
    changes: Vec<Change>,
    settles: Option<Converted>,
}

fn plan_restores(
    o: &Options,
    p: &Paths,
    confs: &[ConfFile],
    state: Option<&StateDir>,
    manifest: &Manifest,
    out: &mut dyn Write,
) -> Result<RestorePlan> {
    let mut plan = RestorePlan::default();
    for c in confs {
        let selected = o.networks.is_empty() || o.networks.contains(&c.net.name);
        if !selected || c.net.tombstone_index().is_none() {
            plan.still_used.extend(c.net.referenced_types());
            continue;
        }
        refuse_symlink(c)?;
        let conv = manifest
            .converted
            .iter()
            .find(|m| m.conflist == c.file_name);
        if let (Some(conv), Some(state)) = (conv, state) {
            if let Some(r) = plan_unconversion(p, c, conv, state, &mut plan.still_used)? {
                plan.restores.push(r);
                continue;
            }
            say(
                out,
                format!(
                    "note: {} was edited after it was converted from {}: removing the entry \
                     only, it stays a list",
                    p.shown(&c.path).display(),
                    conv.conf
                ),
            );
        }
        let mut changes = Vec::new();
        match conflist::remove(&c.text, &c.net)
            .context(format_args!("cannot edit {}", c.path.display()))?
        {
            Edit::Unchanged => {}
            Edit::Changed(new) => {
                if let Ok(net) = conflist::parse(&new) {
                    plan.still_used.extend(net.referenced_types());
                }
                changes.push(c.rewrite(p, new));
            }
        }
        plan.restores.push(Restore {
            changes,
            settles: conv.filter(|_| state.is_some()).cloned(),
        });
    }
    Ok(plan)
}

/// A conversion whose list nobody edited since: the original `.conf` comes back and the list
/// goes. `None` when the list was edited (or a backup is missing): the list stays.
fn plan_unconversion(
    p: &Paths,
    c: &ConfFile,
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
    if wrote != c.text.as_bytes() {
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
                old: c.text.clone(),
            },
        ],
        settles: Some(conv.clone()),
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
        let path = under(&p.root, Path::new(node_path));
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
) -> Vec<Converted> {
    let mut settled = Vec::new();
    'files: for r in restores {
        for c in &r.changes {
            if let Err(e) = c.apply() {
                failures.push(e.context("restoring the network configurations"));
                continue 'files;
            }
            match c {
                Change::Write { .. } => say(out, format!("restored   {}", c.shown().display())),
                Change::Remove { .. } => say(out, format!("removed    {}", c.shown().display())),
            }
        }
        settled.extend(r.settles.clone());
    }
    settled
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
    settled: &[Converted],
    removed: &Removed,
    out: &mut dyn Write,
) -> Result<()> {
    let updating = format!("updating {}", p.shown(state.path()).display());
    let lock = state.lock(MANIFEST).context(&updating)?;
    manifest.converted.retain(|c| !settled.contains(c));
    manifest
        .binaries
        .retain(|n| !removed.binaries.iter().any(|b| b.ends_with(n)));
    manifest.systemd &= !removed.timer;
    if manifest.converted.is_empty() && manifest.binaries.is_empty() {
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
    for conv in settled {
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
