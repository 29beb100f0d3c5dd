//! Install and uninstall: plan every change first (reading only), then, unless `--dry-run`,
//! apply it. Nothing is written when any configuration file is malformed or any binary fails
//! its VERSION check. Binaries go in before the conflists that name them, and come out after.

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

    fn apply(&self) -> Result<(), String> {
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
    fn new(o: &Options) -> Result<Paths, String> {
        let root = std::path::absolute(&o.root)
            .map_err(|e| format!("--root {}: {e}", o.root.display()))?;
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
pub fn run(o: &Options, out: &mut dyn Write) -> Result<(), String> {
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
fn read_confs(dir: &Path) -> Result<Vec<ConfFile>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
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
            .map_err(|_| "not UTF-8 text".to_string())
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
            Err(e) => errors.push(format!(
                "{}: malformed network configuration: {e}",
                path.display()
            )),
        }
    }
    if errors.is_empty() {
        Ok(confs)
    } else {
        Err(format!(
            "{}\nnothing was changed; fix or remove the file and run again",
            errors.join("\n")
        ))
    }
}

fn wanted(o: &Options, c: &ConfFile) -> bool {
    if o.networks.is_empty() {
        c.net.is_ipvlan_based()
    } else {
        o.networks.contains(&c.net.name)
    }
}

fn check_named(o: &Options, confs: &[ConfFile], conf_dir: &Path) -> Result<(), String> {
    for n in &o.networks {
        if !confs.iter().any(|c| &c.net.name == n) {
            return Err(format!(
                "no network named {n:?} in {}; nothing was changed",
                conf_dir.display()
            ));
        }
    }
    Ok(())
}

fn refuse_symlink(c: &ConfFile) -> Result<(), String> {
    if c.symlink {
        Err(format!(
            "{} is a symbolic link: not replacing it (edit its target, or point --conf-dir at \
             the target's directory); nothing was changed",
            c.path.display()
        ))
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

fn plan_binaries(o: &Options, p: &Paths) -> Result<Vec<Binary>, String> {
    let from = match &o.from {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program's directory (use --from): {e}"))?
            .parent()
            .map(Path::to_path_buf)
            .ok_or("cannot find this program's directory (use --from)")?,
    };
    let mut out = Vec::new();
    let optional = OPTIONAL_BINARIES
        .iter()
        .filter(|n| from.join(n).is_file())
        .copied();
    for name in REQUIRED_BINARIES.iter().copied().chain(optional) {
        let src = from.join(name);
        let bytes = fs::read(&src).map_err(|e| {
            format!(
                "cannot read {}: {e} (build with `cargo build --release` or pass --from DIR)",
                src.display()
            )
        })?;
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
pub fn check_version(path: &Path) -> Result<(), String> {
    let fail = |why: String| format!("{} failed its VERSION check: {why}", path.display());
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

fn install(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<(), String> {
    // 1. Plan, reading only.
    let confs = read_confs(&p.conf)?;
    check_named(o, &confs, &p.conf)?;
    let mut changes = Vec::new();
    let mut conversions = Vec::new();
    // Lists rewritten in place: a converted one's record of what was written follows.
    let mut rewrites = Vec::new();
    for c in &confs {
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
            Shape::List => match conflist::add(&c.text, &c.net, &o.plugin)? {
                Edit::Unchanged => say(out, format!("unchanged  {}", p.shown(&c.path).display())),
                Edit::Changed(new) => {
                    refuse_symlink(c)?;
                    rewrites.push((c.file_name.clone(), new.clone()));
                    changes.push(c.rewrite(p, new));
                }
            },
            Shape::Single => {
                refuse_symlink(c)?;
                let stem = c
                    .file_name
                    .rsplit_once('.')
                    .map_or(c.file_name.as_str(), |(s, _)| s);
                let list_name = format!("{stem}.conflist");
                let list_path = p.conf.join(&list_name);
                if fs::symlink_metadata(&list_path).is_ok() {
                    return Err(format!(
                        "cannot convert {} to a list: {} exists; nothing was changed",
                        c.path.display(),
                        list_path.display()
                    ));
                }
                let new = conflist::convert(&c.text, &c.net, &o.plugin)?;
                changes.push(Change::Write {
                    shown: p.shown(&list_path),
                    path: list_path,
                    old: None,
                    new: new.clone(),
                    mode: c.mode,
                });
                changes.push(Change::Remove {
                    shown: p.shown(&c.path),
                    path: c.path.clone(),
                    old: c.text.clone(),
                });
                conversions.push((
                    Converted {
                        conf: c.file_name.clone(),
                        conflist: list_name,
                        mode: c.mode,
                    },
                    c.text.clone(),
                    new,
                ));
            }
        }
    }
    let binaries = if o.skip_binaries {
        Vec::new()
    } else {
        plan_binaries(o, p)?
    };
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
    let mut host_changes = Vec::new();
    for (path, text) in host_files {
        let old = read_opt(&path)?.map(|b| String::from_utf8_lossy(&b).into_owned());
        if old.as_deref() == Some(text.as_str()) && mode_of(&path) == Some(0o644) {
            say(out, format!("unchanged  {}", p.shown(&path).display()));
        } else {
            host_changes.push(Change::Write {
                shown: p.shown(&path),
                path,
                old,
                new: text,
                mode: 0o644,
            });
        }
    }

    // 2. Show.
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
    if o.dry_run {
        for c in host_changes.iter().chain(&changes) {
            let _ = write!(out, "{}", c.diff());
        }
        say(out, "dry run: nothing was written".into());
        return Ok(());
    }

    // 3. Apply: binaries, host files, the state that lets uninstall undo a conversion, then
    // the configuration files.
    for b in binaries.iter().filter(|b| !b.unchanged) {
        write_atomic(&b.dest, &b.bytes, 0o755, |_| Ok(()))?;
        say(out, format!("installed  {}", p.shown(&b.dest).display()));
    }
    for c in &host_changes {
        c.apply()?;
        say(out, format!("wrote      {}", c_shown(c).display()));
    }
    let state = StateDir::open(&p.state).map_err(|e| e.msg)?;
    let _lock = state.lock(MANIFEST).map_err(|e| e.msg)?;
    let mut manifest = load_manifest(&state)?;
    let before = manifest.clone();
    manifest
        .binaries
        .extend(binaries.iter().map(|b| b.name.clone()));
    manifest.systemd |= o.systemd;
    for (conv, orig, wrote) in &conversions {
        state
            .write(&orig_stem(&conv.conf), orig.as_bytes(), true)
            .map_err(|e| e.msg)?;
        state
            .write(&wrote_stem(&conv.conflist), wrote.as_bytes(), true)
            .map_err(|e| e.msg)?;
        manifest.converted.retain(|c| c.conflist != conv.conflist);
        manifest.converted.push(conv.clone());
    }
    for (file_name, new) in &rewrites {
        if manifest.converted.iter().any(|c| &c.conflist == file_name) {
            state
                .write(&wrote_stem(file_name), new.as_bytes(), true)
                .map_err(|e| e.msg)?;
        }
    }
    if manifest != before || state.read(MANIFEST).map_err(|e| e.msg)?.is_none() {
        save_manifest(&state, &manifest)?;
    }
    for c in &changes {
        c.apply()?;
        match c {
            Change::Write { old: Some(_), .. } => {
                say(out, format!("updated    {}", c_shown(c).display()))
            }
            Change::Write { old: None, .. } => {
                say(out, format!("wrote      {}", c_shown(c).display()))
            }
            Change::Remove { .. } => say(
                out,
                format!(
                    "moved      {} (converted; its original is kept for --uninstall)",
                    c_shown(c).display()
                ),
            ),
        }
    }
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

fn c_shown(c: &Change) -> &Path {
    match c {
        Change::Write { shown, .. } | Change::Remove { shown, .. } => shown,
    }
}

fn load_manifest(state: &StateDir) -> Result<Manifest, String> {
    match state.read(MANIFEST).map_err(|e| e.msg)? {
        None => Ok(Manifest::default()),
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            format!(
                "{}/{MANIFEST}.json is damaged ({e}); move it aside to continue",
                state.path().display()
            )
        }),
    }
}

fn save_manifest(state: &StateDir, m: &Manifest) -> Result<(), String> {
    let mut bytes = serde_json::to_vec_pretty(m).expect("a manifest serialises");
    bytes.push(b'\n');
    state.write(MANIFEST, &bytes, true).map_err(|e| e.msg)
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

fn uninstall(o: &Options, p: &Paths, out: &mut dyn Write) -> Result<(), String> {
    let confs = read_confs(&p.conf)?;
    check_named(o, &confs, &p.conf)?;
    let state = if p.state.is_dir() {
        Some(StateDir::open(&p.state).map_err(|e| e.msg)?)
    } else {
        None
    };
    let mut manifest = match &state {
        Some(s) => load_manifest(s)?,
        None => Manifest::default(),
    };
    let mut changes = Vec::new();
    let mut restored = Vec::new();
    // Types still named by a network once the entries are gone: those binaries stay.
    let mut still_used = BTreeSet::new();
    for c in &confs {
        let selected = o.networks.is_empty() || o.networks.contains(&c.net.name);
        let conv = manifest
            .converted
            .iter()
            .find(|m| m.conflist == c.file_name)
            .cloned();
        if !selected || c.net.tombstone_index().is_none() {
            still_used.extend(c.net.referenced_types());
            continue;
        }
        refuse_symlink(c)?;
        // A conversion whose list nobody edited since: the original `.conf` comes back.
        if let (Some(conv), Some(state)) = (&conv, &state) {
            let wrote = state.read(&wrote_stem(&conv.conflist)).map_err(|e| e.msg)?;
            let orig = state.read(&orig_stem(&conv.conf)).map_err(|e| e.msg)?;
            if let (Some(wrote), Some(orig)) = (wrote, orig)
                && wrote == c.text.as_bytes()
            {
                let orig = String::from_utf8(orig)
                    .map_err(|_| format!("the backup of {} is not text", conv.conf))?;
                let conf_path = p.conf.join(&conv.conf);
                if fs::symlink_metadata(&conf_path).is_ok() {
                    return Err(format!(
                        "cannot restore {}: it exists again; nothing was changed",
                        conf_path.display()
                    ));
                }
                if let Ok(net) = conflist::parse(&orig) {
                    still_used.extend(net.referenced_types());
                }
                changes.push(Change::Write {
                    shown: p.shown(&conf_path),
                    path: conf_path,
                    old: None,
                    new: orig,
                    mode: conv.mode,
                });
                changes.push(Change::Remove {
                    shown: p.shown(&c.path),
                    path: c.path.clone(),
                    old: c.text.clone(),
                });
                restored.push(conv.clone());
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
            restored.push(conv.clone());
        }
        match conflist::remove(&c.text, &c.net)? {
            Edit::Unchanged => {}
            Edit::Changed(new) => {
                if let Ok(net) = conflist::parse(&new) {
                    still_used.extend(net.referenced_types());
                }
                changes.push(c.rewrite(p, new));
            }
        }
    }

    let mut names: BTreeSet<String> = REQUIRED_BINARIES
        .iter()
        .chain(OPTIONAL_BINARIES.iter())
        .map(|s| s.to_string())
        .collect();
    names.extend(manifest.binaries.iter().cloned());
    let mut gone_binaries = Vec::new();
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
            gone_binaries.push(path);
        }
    }
    let mut host_gone = Vec::new();
    // The protocol name and the timer go only with the plugin itself.
    if !still_used.contains(conflist::TOMBSTONE_TYPE) {
        for node_path in [host::RT_PROTOS_PATH, host::TIMER_PATH, host::SERVICE_PATH] {
            let path = under(&p.root, Path::new(node_path));
            let Some(old) = read_opt(&path)? else {
                continue;
            };
            let old = String::from_utf8_lossy(&old).into_owned();
            if old.starts_with(host::MARKER) {
                host_gone.push(Change::Remove {
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
    }

    if o.dry_run {
        for c in &changes {
            let _ = write!(out, "{}", c.diff());
        }
        for b in &gone_binaries {
            say(out, format!("would remove {}", p.shown(b).display()));
        }
        for c in &host_gone {
            let _ = write!(out, "{}", c.diff());
        }
        say(out, "dry run: nothing was written".into());
        return Ok(());
    }

    for c in &changes {
        c.apply()?;
        match c {
            Change::Write { .. } => say(out, format!("restored   {}", c_shown(c).display())),
            Change::Remove { .. } => say(out, format!("removed    {}", c_shown(c).display())),
        }
    }
    let stops_timer = host_gone
        .iter()
        .any(|c| c_shown(c) == Path::new(host::TIMER_PATH));
    if stops_timer {
        systemctl(p, out, &[&["disable", "--now", host::TIMER_UNIT]]);
    }
    for b in &gone_binaries {
        files::remove(b)?;
        say(out, format!("removed    {}", p.shown(b).display()));
    }
    for c in &host_gone {
        c.apply()?;
        say(out, format!("removed    {}", c_shown(c).display()));
    }
    if stops_timer {
        systemctl(p, out, &[&["daemon-reload"]]);
    }
    if let Some(state) = state {
        let lock = state.lock(MANIFEST).map_err(|e| e.msg)?;
        for conv in &restored {
            manifest.converted.retain(|c| c != conv);
            let _ = fs::remove_file(state.path().join(format!("{}.json", orig_stem(&conv.conf))));
            let _ = fs::remove_file(
                state
                    .path()
                    .join(format!("{}.json", wrote_stem(&conv.conflist))),
            );
        }
        manifest
            .binaries
            .retain(|n| !gone_binaries.iter().any(|b| b.ends_with(n)));
        manifest.systemd &= !stops_timer;
        drop(lock);
        if manifest.converted.is_empty() && manifest.binaries.is_empty() {
            fs::remove_dir_all(state.path())
                .map_err(|e| format!("cannot remove {}: {e}", state.path().display()))?;
            say(
                out,
                format!("removed    {}", p.shown(state.path()).display()),
            );
        } else {
            save_manifest(&state, &manifest)?;
        }
    }
    say(out, "done".into());
    Ok(())
}
