//! Every command the documentation gives can be run as written. Scans every `*.md` of the
//! repository (not `target/`, not hidden directories), takes the shell commands of fenced
//! code blocks and of inline code, and checks each without running it:
//!
//! - `cargo test|run|build|bench|check ...`: flags against an allowlist (libtest's after
//!   `--` for `test`/`bench`), at most one TESTNAME before `--`, every `-p` a workspace
//!   package, every `--test`/`--example`/`--bin`/`--bench` a target of a selected package
//!   (of any workspace package when no `-p`), `--lib` only where there is a library, and a
//!   `cargo run` that can tell which binary to run — all from `cargo metadata --no-deps`;
//! - `make <target>`: the target exists in the Makefile;
//! - scripts (`bash x.sh`, `sh x.sh`, `./x`, a command that is a `*.sh` path): the file
//!   exists;
//! - inline code that is a repository path (its first component a top-level entry of the
//!   repository): the path exists, so a renamed file is not cited by its old name;
//! - relative Markdown links (`[text](path)`): the file exists.
//!
//! A failure lists every bad command with its `file:line`. No root, no network, no build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// What the checks know about the repository.
struct Repo {
    root: PathBuf,
    /// Package name → its targets as (kind, name), and its `default-run`.
    packages: BTreeMap<String, Package>,
    make_targets: BTreeSet<String>,
    /// Names of the repository's top-level entries (a path in inline code starting with one
    /// of these is checked).
    top_level: BTreeSet<String>,
}

struct Package {
    targets: Vec<(String, String)>,
    default_run: Option<String>,
}

impl Package {
    fn has(&self, kind: &str, name: &str) -> bool {
        self.targets.iter().any(|(k, n)| k == kind && n == name)
    }
    fn has_kind(&self, kind: &str) -> bool {
        self.targets.iter().any(|(k, _)| k == kind)
    }
    fn bins(&self) -> Vec<&str> {
        self.targets
            .iter()
            .filter(|(k, _)| k == "bin")
            .map(|(_, n)| n.as_str())
            .collect()
    }
}

fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let root = repo_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(&root)
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
        let mut packages = BTreeMap::new();
        for p in meta["packages"].as_array().expect("packages") {
            let mut targets = Vec::new();
            for t in p["targets"].as_array().expect("targets") {
                let name = t["name"].as_str().expect("target name").to_string();
                for k in t["kind"].as_array().expect("target kind") {
                    let k = k.as_str().expect("kind");
                    // Library kinds (lib, rlib, cdylib, ...) are all "lib" to `--lib`.
                    let k = if k.ends_with("lib") { "lib" } else { k };
                    targets.push((k.to_string(), name.clone()));
                }
            }
            packages.insert(
                p["name"].as_str().expect("package name").to_string(),
                Package {
                    targets,
                    default_run: p["default_run"].as_str().map(str::to_string),
                },
            );
        }
        let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap_or_default();
        let top_level = std::fs::read_dir(&root)
            .expect("the repository root")
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n != "target")
            .collect();
        Repo {
            root,
            packages,
            make_targets: make_targets(&makefile),
            top_level,
        }
    })
}

/// The rule targets of a Makefile (`name:`, not `name :=`, not special `.TARGETS`).
fn make_targets(makefile: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in makefile.lines() {
        if line.starts_with(['\t', ' ', '#', '.']) {
            continue;
        }
        let Some((names, rest)) = line.split_once(':') else {
            continue;
        };
        if rest.starts_with('=') || names.contains('=') {
            continue;
        }
        out.extend(names.split_whitespace().map(str::to_string));
    }
    out
}

/// A piece of shell text found in a document, with where it starts.
#[derive(Debug, Clone, PartialEq)]
struct Snippet {
    line: usize,
    text: String,
    /// Inline code (one span) rather than a line of a fenced block.
    inline: bool,
}

/// The shell snippets of a Markdown text: every (continued) line of every fenced block, and
/// every inline code span (which may run over a line break within its paragraph).
fn snippets(md: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let lines: Vec<&str> = md.lines().collect();
    let mut fence: Option<String> = None;
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(f) = &fence {
            if trimmed.starts_with(f.as_str())
                && trimmed
                    .trim_end()
                    .chars()
                    .all(|c| c == f.chars().next().unwrap())
            {
                fence = None;
                i += 1;
                continue;
            }
            // A logical line: backslash continuations joined.
            let start = i;
            let mut text = String::new();
            let mut cur = line;
            loop {
                match cur.trim_end().strip_suffix('\\') {
                    Some(head) if i + 1 < lines.len() => {
                        text.push_str(head);
                        text.push(' ');
                        i += 1;
                        cur = lines[i];
                    }
                    _ => {
                        text.push_str(cur);
                        break;
                    }
                }
            }
            out.push(Snippet {
                line: start + 1,
                text,
                inline: false,
            });
            i += 1;
            continue;
        }
        let marker: String = trimmed
            .chars()
            .take_while(|c| *c == '`' || *c == '~')
            .collect();
        if marker.len() >= 3
            && (marker.chars().all(|c| c == '`') || marker.chars().all(|c| c == '~'))
        {
            out.extend(inline_spans(&paragraph));
            paragraph.clear();
            fence = Some(marker);
            i += 1;
            continue;
        }
        if trimmed.is_empty() {
            out.extend(inline_spans(&paragraph));
            paragraph.clear();
        } else {
            paragraph.push((i + 1, line));
        }
        i += 1;
    }
    out.extend(inline_spans(&paragraph));
    out
}

/// The inline code spans of one paragraph (numbered lines), CommonMark-style: a run of n
/// backticks up to the next run of exactly n; line breaks inside become spaces.
fn inline_spans(paragraph: &[(usize, &str)]) -> Vec<Snippet> {
    let mut text = String::new();
    let mut starts = Vec::new(); // (byte offset, line number)
    for (n, l) in paragraph {
        starts.push((text.len(), *n));
        text.push_str(l);
        text.push('\n');
    }
    let line_of = |off: usize| {
        starts
            .iter()
            .rev()
            .find(|(o, _)| *o <= off)
            .map_or(0, |(_, n)| *n)
    };
    let b = text.as_bytes();
    let run = |at: usize| b[at..].iter().take_while(|c| **c == b'`').count();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run(i);
        let open = i;
        let mut j = i + n;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let m = run(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(c) => {
                let content = text[open + n..c].replace('\n', " ");
                out.push(Snippet {
                    line: line_of(open),
                    text: content.trim().to_string(),
                    inline: true,
                });
                i = c + n;
            }
            None => i = open + n,
        }
    }
    out
}

/// Shell words and the operators between commands (`&&`, `||`, `;`, `|`), quotes removed; a
/// `#` that starts a word ends the line (a comment).
fn words(text: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, commands: &mut Vec<Vec<String>>| {
        if *in_word {
            commands.last_mut().unwrap().push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                word.push(e);
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    word.push(e);
                }
            }
            '#' if !in_word => break,
            ';' | '|' | '&' => {
                end_word(&mut word, &mut in_word, &mut commands);
                if c != ';' && chars.peek() == Some(&c) {
                    chars.next();
                } else if c == '&' {
                    // A lone `&` (background) also ends the command.
                }
                commands.push(Vec::new());
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut commands),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut commands);
    commands.retain(|c| !c.is_empty());
    commands
}

/// The command proper: a `$ ` prompt, `sudo` and leading `VAR=value` assignments dropped.
fn strip_prefix(mut w: &[String]) -> &[String] {
    loop {
        match w.first().map(String::as_str) {
            Some("$") | Some("sudo") => w = &w[1..],
            Some(a) if is_assignment(a) => w = &w[1..],
            _ => return w,
        }
    }
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Cargo options per subcommand: (flag, takes a value).
fn cargo_flags(sub: &str) -> Option<&'static [(&'static str, bool)]> {
    const COMMON: &[(&str, bool)] = &[
        ("--release", false),
        ("-r", false),
        ("--profile", true),
        ("-p", true),
        ("--package", true),
        ("--workspace", false),
        ("--all", false),
        ("--exclude", true),
        ("--lib", false),
        ("--bins", false),
        ("--bin", true),
        ("--examples", false),
        ("--example", true),
        ("--tests", false),
        ("--test", true),
        ("--benches", false),
        ("--bench", true),
        ("--all-targets", false),
        ("-F", true),
        ("--features", true),
        ("--all-features", false),
        ("--no-default-features", false),
        ("-j", true),
        ("--jobs", true),
        ("--target", true),
        ("--target-dir", true),
        ("--manifest-path", true),
        ("--locked", false),
        ("--offline", false),
        ("--frozen", false),
        ("-q", false),
        ("--quiet", false),
        ("-v", false),
        ("--verbose", false),
        ("--message-format", true),
        ("--color", true),
        ("--timings", false),
        ("--doc", false),
        ("--no-run", false),
        ("--no-fail-fast", false),
    ];
    match sub {
        "test" | "bench" | "build" | "check" | "run" => Some(COMMON),
        _ => None,
    }
}

/// Options a subcommand does not take even though they are in the common list.
fn not_for(sub: &str, flag: &str) -> bool {
    match sub {
        "build" | "check" => matches!(flag, "--doc" | "--no-run" | "--no-fail-fast"),
        "run" => !matches!(
            flag,
            "--release"
                | "-r"
                | "--profile"
                | "-p"
                | "--package"
                | "--bin"
                | "--example"
                | "-F"
                | "--features"
                | "--all-features"
                | "--no-default-features"
                | "-j"
                | "--jobs"
                | "--target"
                | "--target-dir"
                | "--manifest-path"
                | "--locked"
                | "--offline"
                | "--frozen"
                | "-q"
                | "--quiet"
                | "-v"
                | "--verbose"
                | "--message-format"
                | "--color"
                | "--timings"
        ),
        "bench" => matches!(flag, "--release" | "-r" | "--doc"),
        _ => false,
    }
}

/// The test harness's (libtest's) options after `--`: (flag, takes a value).
const LIBTEST_FLAGS: &[(&str, bool)] = &[
    ("--include-ignored", false),
    ("--ignored", false),
    ("--nocapture", false),
    ("--no-capture", false),
    ("--show-output", false),
    ("--test-threads", true),
    ("--exact", false),
    ("--skip", true),
    ("-q", false),
    ("--quiet", false),
    ("--list", false),
    ("--format", true),
    ("--color", true),
    ("--test", false),
    ("--bench", false),
    ("--logfile", true),
    ("--report-time", false),
    ("--shuffle", false),
    ("--shuffle-seed", true),
    ("--force-run-in-process", false),
    ("-Z", true),
];

/// Splits `--flag=value`.
fn flag_and_value(w: &str) -> (&str, Option<&str>) {
    match w.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f, Some(v)),
        _ => (w, None),
    }
}

/// What is wrong with a `cargo` command, if anything (`w` starts after `cargo`).
fn check_cargo(repo: &Repo, w: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    // `cargo` alone (a word in prose, or cargo's help) is not a command to check.
    let Some(sub) = w.first().map(String::as_str) else {
        return bad;
    };
    if matches!(
        sub,
        "fmt" | "clippy" | "metadata" | "doc" | "tree" | "install" | "update"
    ) {
        return bad;
    }
    let Some(flags) = cargo_flags(sub) else {
        return vec![format!("unknown cargo subcommand {sub:?}")];
    };
    let mut packages: Vec<String> = Vec::new();
    let mut wanted: Vec<(&'static str, String)> = Vec::new(); // (kind, name)
    let mut lib = false;
    let mut workspace = false;
    let mut positional = 0;
    let mut harness: &[String] = &[];
    let mut i = 1;
    while i < w.len() {
        let word = w[i].as_str();
        if word == "--" {
            harness = &w[i + 1..];
            break;
        }
        if !word.starts_with('-') || word == "-" {
            positional += 1;
            i += 1;
            continue;
        }
        let (flag, inline_value) = flag_and_value(word);
        let Some(&(_, takes)) = flags.iter().find(|(f, _)| *f == flag) else {
            bad.push(format!("cargo {sub}: unknown option {flag}"));
            i += 1;
            continue;
        };
        if not_for(sub, flag) {
            bad.push(format!("cargo {sub} does not take {flag}"));
        }
        let value = if takes {
            match inline_value {
                Some(v) => Some(v.to_string()),
                None => {
                    i += 1;
                    match w.get(i) {
                        Some(v) if !v.starts_with('-') => Some(v.clone()),
                        _ => {
                            bad.push(format!("cargo {sub}: {flag} needs a value"));
                            None
                        }
                    }
                }
            }
        } else {
            None
        };
        match (flag, value) {
            ("-p" | "--package" | "--exclude", Some(v)) => {
                let name = v.split('@').next().unwrap_or(&v).to_string();
                if !repo.packages.contains_key(&name) {
                    bad.push(format!("{name:?} is not a workspace package"));
                }
                if flag != "--exclude" {
                    packages.push(name);
                }
            }
            ("--test", Some(v)) => wanted.push(("test", v)),
            ("--example", Some(v)) => wanted.push(("example", v)),
            ("--bin", Some(v)) => wanted.push(("bin", v)),
            ("--bench", Some(v)) => wanted.push(("bench", v)),
            ("--lib", _) => lib = true,
            ("--workspace" | "--all", _) => workspace = true,
            _ => {}
        }
        i += 1;
    }
    let max_positional = match sub {
        "test" | "bench" => 1,
        "run" => usize::MAX,
        _ => 0,
    };
    if positional > max_positional {
        bad.push(format!(
            "cargo {sub} takes {} argument{} before `--`, not {positional} (put test filters after `--`, or run one command per package)",
            if max_positional == 0 { "no".to_string() } else { max_positional.to_string() },
            if max_positional == 1 { "" } else { "s" }
        ));
    }
    // The packages whose targets count: the named ones, else every workspace member (a
    // virtual workspace's root selects them all).
    let selected: Vec<&Package> = if packages.is_empty() || workspace {
        repo.packages.values().collect()
    } else {
        packages
            .iter()
            .filter_map(|p| repo.packages.get(p))
            .collect()
    };
    let scope = if packages.is_empty() {
        "any workspace package".to_string()
    } else {
        packages.join(", ")
    };
    for (kind, name) in &wanted {
        if !selected.iter().any(|p| p.has(kind, name)) {
            bad.push(format!("no {kind} target {name:?} in {scope}"));
        }
    }
    if lib && !selected.iter().any(|p| p.has_kind("lib")) {
        bad.push(format!("no library in {scope}"));
    }
    if sub == "run" {
        match packages.as_slice() {
            [one] => {
                if let Some(p) = repo.packages.get(one)
                    && wanted.is_empty()
                    && p.default_run.is_none()
                    && p.bins().len() != 1
                {
                    bad.push(format!(
                        "cargo run cannot tell which binary of {one} to run ({} binaries, no default-run): add --bin",
                        p.bins().len()
                    ));
                }
            }
            [] => bad.push("cargo run at the workspace root needs -p <package>".into()),
            _ => bad.push("cargo run takes one package".into()),
        }
    }
    if matches!(sub, "test" | "bench") {
        let mut j = 0;
        while j < harness.len() {
            let word = harness[j].as_str();
            if word.starts_with('-') {
                let (flag, inline_value) = flag_and_value(word);
                match LIBTEST_FLAGS.iter().find(|(f, _)| *f == flag) {
                    None => bad.push(format!("the test harness has no option {flag}")),
                    Some((_, true)) if inline_value.is_none() => j += 1,
                    Some(_) => {}
                }
            }
            j += 1;
        }
    }
    bad
}

/// Whether a word names a script of the repository (relative, no glob, no placeholder).
fn is_repo_path(repo: &Repo, w: &str) -> bool {
    let w = w.strip_prefix("./").unwrap_or(w);
    let first = w.split('/').next().unwrap_or("");
    w.contains('/')
        && repo.top_level.contains(first)
        && !w.contains(['*', '<', '>', '{', '$', ' ', '[', '…'])
        && !w.contains("...")
        && !w.split('/').skip(1).any(|c| c.starts_with('.'))
}

fn check_file(repo: &Repo, path: &str) -> Option<String> {
    let rel = path.strip_prefix("./").unwrap_or(path);
    (!repo.root.join(rel).exists()).then(|| format!("{path} does not exist"))
}

/// What is wrong with one snippet; `None` when it is not a command we check, or is fine.
fn check_snippet(repo: &Repo, s: &Snippet) -> Vec<String> {
    let mut bad = Vec::new();
    let text = s.text.trim();
    // A path cited in inline code (not a command): it must exist.
    if s.inline && !text.contains(char::is_whitespace) && is_repo_path(repo, text) {
        return check_file(repo, text).into_iter().collect();
    }
    for cmd in words(text) {
        let w = strip_prefix(&cmd);
        let Some(first) = w.first().map(String::as_str) else {
            continue;
        };
        match first {
            "cargo" => bad.extend(check_cargo(repo, &w[1..])),
            "make" => {
                for t in w[1..]
                    .iter()
                    .filter(|a| !a.starts_with('-') && !a.contains('='))
                {
                    if !repo.make_targets.contains(t) {
                        bad.push(format!("make: no target {t:?} in the Makefile"));
                    }
                }
            }
            "bash" | "sh" => {
                if let Some(script) = w.get(1).filter(|a| !a.starts_with('-'))
                    && is_repo_path(repo, script)
                {
                    bad.extend(check_file(repo, script));
                }
            }
            f if (f.starts_with("./") || f.ends_with(".sh")) && is_repo_path(repo, f) => {
                bad.extend(check_file(repo, f));
            }
            _ => {}
        }
    }
    bad
}

/// The relative link targets of a Markdown text (`[text](target)`, not URLs, not anchors
/// alone), with their lines, outside fenced blocks and inline code.
fn links(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence = false;
    for (n, line) in md.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        // Inline code is not a link.
        let text: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            let path = target.split('#').next().unwrap_or("");
            if !path.is_empty() && !path.contains("://") && !path.starts_with("mailto:") {
                out.push((n + 1, path.to_string()));
            }
            rest = &after[end..];
        }
    }
    out
}

/// Every problem of one Markdown text (`file` relative to the repository root), as
/// `file:line: `command`: why`.
fn problems(repo: &Repo, file: &str, md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in snippets(md) {
        for why in check_snippet(repo, &s) {
            out.push(format!("{file}:{}: `{}`: {why}", s.line, s.text.trim()));
        }
    }
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    for (line, target) in links(md) {
        if !repo.root.join(dir).join(&target).exists() {
            out.push(format!("{file}:{line}: link ({target}): no such file"));
        }
    }
    out.sort_by_key(|p| {
        p.split(':')
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    });
    out
}

/// Every `*.md` of the repository, skipping `target/` and hidden directories.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if p.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&p, out);
                }
            } else if name.ends_with(".md") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

#[test]
fn every_documented_command_is_valid() {
    let repo = repo();
    let files = markdown_files(&repo.root);
    assert!(
        files.len() >= 5,
        "found only {} Markdown files",
        files.len()
    );
    let mut bad = Vec::new();
    let mut checked = 0;
    let mut linked = 0;
    for f in &files {
        let md = std::fs::read_to_string(f).unwrap();
        let shown = f
            .strip_prefix(&repo.root)
            .unwrap_or(f)
            .display()
            .to_string();
        checked += snippets(&md)
            .iter()
            .filter(|s| {
                let t = s.text.trim_start();
                t.starts_with("cargo ") || t.starts_with("make ")
            })
            .count();
        linked += links(&md).len();
        bad.extend(problems(repo, &shown, &md));
    }
    assert!(
        linked > 5,
        "only {linked} relative links found: is the scanner broken?"
    );
    assert!(
        checked > 20,
        "only {checked} cargo/make commands found: is the scanner broken?"
    );
    assert!(
        bad.is_empty(),
        "{} documented commands would fail:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The checker itself: each kind of bad command is caught, with its line; good ones pass.
#[test]
fn bad_commands_are_caught_with_their_line() {
    let repo = repo();
    let md = "\
# A doc

Run `cargo test --release -p tombstone --lib ipvlan delegate` first.

```sh
cargo test --release -p cni-conformance --test doc_commands   # fine
cargo test -p no-such-package
cargo test --release --frobnicate
make test && make no-such-target
bash conformance/no/such/script.sh
cargo test --release -p tombstone-ipam --test no_such_test -- --include-ignored
cargo run --release -p tombstone-ipam --example ipam-bench
cargo run --release -p cni-conformance -- demo
cargo test -p tombstone-install -- --include-ignord
cargo build --release \\
  -p tombstone-kernel --bin tombstone
```

A path, `plugin/src/netlink.rs`, and one that exists, `plugin/src/chained/`; and
an inline command over a line break, `cargo test --release
--workspace -- --include-ignored`, and `cargo run --release -p tombstone`.
See [the design](docs/NO-SUCH.md#x), [the README](README.md) and [a site](https://example.org/a).
";
    let got = problems(repo, "doc.md", md);
    let lines: Vec<&str> = got.iter().map(|p| p.split(": ").next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "doc.md:3",
            "doc.md:7",
            "doc.md:8",
            "doc.md:9",
            "doc.md:10",
            "doc.md:11",
            "doc.md:14",
            "doc.md:15",
            "doc.md:19",
            "doc.md:21",
            "doc.md:22",
        ],
        "{}",
        got.join("\n")
    );
    assert!(
        got[0].contains("takes 1 argument before `--`, not 2"),
        "{}",
        got[0]
    );
    assert!(got[1].contains("\"no-such-package\" is not a workspace package"));
    assert!(got[2].contains("unknown option --frobnicate"));
    assert!(got[3].contains("no target \"no-such-target\""));
    assert!(got[4].contains("does not exist"));
    assert!(got[5].contains("no test target \"no_such_test\" in tombstone-ipam"));
    assert!(got[6].contains("no option --include-ignord"));
    assert!(got[7].contains("no bin target \"tombstone\" in tombstone-kernel"));
    assert!(got[8].contains("plugin/src/netlink.rs does not exist"));
    assert!(got[9].contains("cannot tell which binary of tombstone to run"));
    assert!(
        got[10].contains("link (docs/NO-SUCH.md): no such file"),
        "{}",
        got[10]
    );
}

#[test]
fn shell_words_split_commands_and_drop_comments() {
    assert_eq!(
        words("A=1 cargo run -- job 'ip -d link' && make test # make nothing"),
        vec![
            vec!["A=1", "cargo", "run", "--", "job", "ip -d link"],
            vec!["make", "test"],
        ]
    );
    let targets = make_targets("X ?= 1\nY := 2\n.PHONY: a b\na: b\n\tcmd: no\nb c:\n");
    assert_eq!(targets.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
}
