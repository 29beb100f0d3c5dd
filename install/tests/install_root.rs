//! The built `tombstone-install`, whole process, in a temporary `--root`: fresh install,
//! idempotence, uninstall byte for byte, `.conf` conversion and back, `--dry-run`, malformed
//! files, networks left alone, binaries that fail their VERSION check.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::SystemTime;

const INSTALLER: &str = env!("CARGO_BIN_EXE_tombstone-install");

/// The directory holding the real `tombstone` and `tombstone-ipam` binaries (built beside
/// the installer; built here when a run of this package alone has not built them).
fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(INSTALLER).parent().unwrap().to_path_buf();
        if !dir.join("tombstone").is_file() || !dir.join("tombstone-ipam").is_file() {
            let profile = dir.file_name().unwrap().to_string_lossy().into_owned();
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
            cmd.args(["build", "-p", "tombstone", "-p", "tombstone-ipam", "--bins"]);
            if profile == "release" {
                cmd.arg("--release");
            }
            assert!(cmd.status().unwrap().success(), "cannot build the plugins");
        }
        // A copy without tombstone-ipvlan, so the set of binaries does not depend on what
        // else the workspace has built.
        let from = scratch("from");
        for b in ["tombstone", "tombstone-ipam"] {
            fs::copy(dir.join(b), from.join(b)).unwrap();
        }
        from
    })
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ts-install-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

struct Root {
    path: PathBuf,
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

impl Root {
    fn new(tag: &str) -> Root {
        let path = scratch(tag);
        fs::create_dir_all(path.join("etc/cni/net.d")).unwrap();
        Root { path }
    }

    fn conf(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join("etc/cni/net.d").join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.file(rel)).unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(INSTALLER)
            .arg("--root")
            .arg(&self.path)
            .arg("--from")
            .arg(plugins_dir())
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Every file and directory under the root: bytes, mode, modification time.
    fn snapshot(&self) -> BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)> {
        let mut out = BTreeMap::new();
        walk(&self.path, &self.path, &mut out);
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(base).unwrap().to_path_buf();
        if m.is_dir() {
            out.insert(
                rel,
                (Vec::new(), m.permissions().mode(), SystemTime::UNIX_EPOCH),
            );
            walk(base, &p, out);
        } else {
            out.insert(
                rel,
                (
                    fs::read(&p).unwrap(),
                    m.permissions().mode(),
                    m.modified().unwrap(),
                ),
            );
        }
    }
}

fn files_only(
    s: &BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)>,
) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    s.iter()
        .filter(|(_, v)| v.2 != SystemTime::UNIX_EPOCH)
        .map(|(k, v)| (k.clone(), (v.0.clone(), v.1)))
        .collect()
}

const PODS: &str = r#"{
    "cniVersion": "1.0.0",
    "name": "pods",
    "plugins": [
        {
            "type": "ipvlan",
            "master": "eth0",
            "mode": "l2",
            "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.10.0.0/24" }]] }
        },
        { "type": "portmap", "capabilities": { "portMappings": true } }
    ]
}
"#;
const COMPACT: &str =
    r#"{"cniVersion":"1.1.0","name":"fast","plugins":[{"type":"ipvlan","master":"eth1"}]}"#;
const BRIDGE: &str = "{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \"br\",\n  \"plugins\": [\n    { \"type\": \"bridge\", \"bridge\": \"cni0\" }\n  ]\n}\n";
const SINGLE: &str = "{\n\t\"cniVersion\": \"0.4.0\",\n\t\"name\": \"legacy\",\n\t\"type\": \"ipvlan\",\n\t\"master\": \"eth2\",\n\t\"ipam\": {\"type\": \"host-local\", \"subnet\": \"10.30.0.0/24\"}\n}\n";

fn node() -> Root {
    let r = Root::new(&format!("{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    r.conf("10-pods.conflist", PODS);
    r.conf("20-fast.conflist", COMPACT);
    r.conf("30-br.conflist", BRIDGE);
    r.conf("40-legacy.conf", SINGLE);
    // Someone else's binary in the bin dir, with its own mode.
    fs::create_dir_all(r.file("opt/cni/bin")).unwrap();
    fs::write(r.file("opt/cni/bin/host-local"), b"not ours").unwrap();
    fs::set_permissions(
        r.file("opt/cni/bin/host-local"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    r
}

fn types(text: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fresh_install_then_a_second_run_changes_nothing() {
    let r = node();
    let out = r.ok(&[
        "--hold-seconds",
        "30",
        "--route-type",
        "blackhole",
        "--systemd",
    ]);
    assert!(out.contains("installed  /opt/cni/bin/tombstone\n"), "{out}");

    for b in ["tombstone", "tombstone-ipam"] {
        let dest = r.file(&format!("opt/cni/bin/{b}"));
        assert_eq!(
            fs::read(&dest).unwrap(),
            fs::read(plugins_dir().join(b)).unwrap()
        );
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        let v = Command::new(&dest)
            .env("CNI_COMMAND", "VERSION")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&v.stdout).contains("supportedVersions"));
    }
    assert!(!r.file("opt/cni/bin/tombstone-ipvlan").exists());
    assert_eq!(
        fs::read(r.file("opt/cni/bin/host-local")).unwrap(),
        b"not ours"
    );

    let pods = r.read("etc/cni/net.d/10-pods.conflist");
    assert_eq!(types(&pods), ["ipvlan", "tombstone", "portmap"]);
    assert!(pods.contains(
        "        },\n        {\n            \"type\": \"tombstone\",\n            \"holdSeconds\": 30,\n            \"routeType\": \"blackhole\"\n        },\n        { \"type\": \"portmap\""
    ), "{pods}");
    // The runtime loads 10-pods.conflist: the other files are left alone, and said so.
    assert_eq!(r.read("etc/cni/net.d/20-fast.conflist"), COMPACT);
    assert_eq!(r.read("etc/cni/net.d/30-br.conflist"), BRIDGE);
    assert_eq!(r.read("etc/cni/net.d/40-legacy.conf"), SINGLE);
    for f in ["20-fast.conflist", "30-br.conflist", "40-legacy.conf"] {
        assert!(
            out.contains(&format!(
                "ignored    /etc/cni/net.d/{f} (the runtime loads /etc/cni/net.d/10-pods.conflist first;"
            )),
            "{out}"
        );
    }
    assert!(
        r.read("etc/iproute2/rt_protos.d/tombstone.conf")
            .contains("\n84\ttombstone\n")
    );
    assert!(
        r.read("etc/systemd/system/tombstone-sweep.service")
            .contains("ExecStart=/opt/cni/bin/tombstone sweep\n")
    );
    assert!(
        r.read("etc/systemd/system/tombstone-sweep.timer")
            .contains("OnUnitActiveSec=10s")
    );

    let before = r.snapshot();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = r.ok(&[
        "--hold-seconds",
        "30",
        "--route-type",
        "blackhole",
        "--systemd",
    ]);
    assert_eq!(
        r.snapshot(),
        before,
        "a second run changed something:\n{again}"
    );
    for word in ["installed", "updated", "wrote", "moved"] {
        assert!(!again.contains(word), "{again}");
    }
    // Two binaries, one list, three host files.
    assert_eq!(again.matches("unchanged").count(), 6, "{again}");
}

#[test]
fn uninstall_restores_every_file_byte_for_byte() {
    let r = node();
    let before = files_only(&r.snapshot());
    r.ok(&["--systemd", "--hold-seconds", "45"]);
    // The options change once (an upgrade): the entry is updated in place.
    let out = r.ok(&[
        "--systemd",
        "--hold-seconds",
        "20",
        "--table",
        "main",
        "--table",
        "100",
    ]);
    assert!(
        out.contains("updated    /etc/cni/net.d/10-pods.conflist"),
        "{out}"
    );
    assert!(
        r.read("etc/cni/net.d/10-pods.conflist")
            .contains("\"holdSeconds\": 20,")
    );
    let out = r.ok(&["--uninstall"]);
    assert!(out.contains("removed    /opt/cni/bin/tombstone\n"), "{out}");
    assert_eq!(files_only(&r.snapshot()), before);
    assert!(!r.file("var/lib/tombstone-install").exists());
    // Uninstalling again finds nothing to do.
    let out = r.ok(&["--uninstall"]);
    assert!(!out.contains("removed"), "{out}");
    assert_eq!(files_only(&r.snapshot()), before);
}

#[test]
fn a_single_plugin_conf_becomes_a_list_and_comes_back() {
    let r = node();
    r.ok(&["--network", "legacy"]);
    assert!(!r.file("etc/cni/net.d/40-legacy.conf").exists());
    let list = r.read("etc/cni/net.d/40-legacy.conflist");
    assert_eq!(types(&list), ["ipvlan", "tombstone"]);
    assert!(list.starts_with("{\n\t\"cniVersion\": \"0.4.0\",\n\t\"name\": \"legacy\",\n\t\"plugins\": [\n\t\t{\n\t\t\t\"type\": \"ipvlan\""), "{list}");
    // A second run leaves the list alone and does not resurrect the .conf.
    r.ok(&["--network", "legacy"]);
    assert!(!r.file("etc/cni/net.d/40-legacy.conf").exists());
    r.ok(&["--uninstall"]);
    assert_eq!(r.read("etc/cni/net.d/40-legacy.conf"), SINGLE);
    assert!(!r.file("etc/cni/net.d/40-legacy.conflist").exists());
}

#[test]
fn a_list_edited_after_conversion_keeps_the_edit() {
    let r = node();
    r.ok(&["--network", "legacy"]);
    let p = r.file("etc/cni/net.d/40-legacy.conflist");
    let edited = r
        .read("etc/cni/net.d/40-legacy.conflist")
        .replace("eth2", "eth3");
    fs::write(&p, &edited).unwrap();
    let out = r.ok(&["--uninstall"]);
    assert!(out.contains("was edited after it was converted"), "{out}");
    let now = r.read("etc/cni/net.d/40-legacy.conflist");
    assert_eq!(types(&now), ["ipvlan"]);
    assert!(now.contains("eth3"));
    assert!(!r.file("etc/cni/net.d/40-legacy.conf").exists());
}

#[test]
fn dry_run_prints_diffs_and_writes_nothing() {
    let r = node();
    let before = r.snapshot();
    let out = r.ok(&[
        "--dry-run",
        "--hold-seconds",
        "15",
        "--systemd",
        "--network",
        "pods",
        "--network",
        "legacy",
    ]);
    assert_eq!(r.snapshot(), before);
    assert!(out.contains(
        "--- /etc/cni/net.d/10-pods.conflist\n+++ /etc/cni/net.d/10-pods.conflist\n@@ -8,6 +8,10 @@\n"
    ), "{out}");
    assert!(out.contains("+        {\n+            \"type\": \"tombstone\",\n+            \"holdSeconds\": 15\n+        },\n"), "{out}");
    assert!(
        out.contains("--- /dev/null\n+++ /etc/cni/net.d/40-legacy.conflist\n"),
        "{out}"
    );
    assert!(
        out.contains("--- /etc/cni/net.d/40-legacy.conf\n+++ /dev/null\n"),
        "{out}"
    );
    assert!(out.contains("+84\ttombstone\n"), "{out}");
    assert!(
        out.contains("would install /opt/cni/bin/tombstone "),
        "{out}"
    );
    assert!(out.ends_with("dry run: nothing was written\n"));

    r.ok(&[]);
    let installed = r.snapshot();
    let out = r.ok(&["--uninstall", "--dry-run"]);
    assert_eq!(r.snapshot(), installed);
    assert!(
        out.contains("-            \"type\": \"tombstone\",\n-            \"holdSeconds\": 30\n"),
        "{out}"
    );
    assert!(
        out.contains("would remove /opt/cni/bin/tombstone\n"),
        "{out}"
    );
}

#[test]
fn a_malformed_conflist_is_not_ready_and_the_next_file_is_loaded() {
    let r = node();
    let bad = "{\n  \"name\": \"broken\",\n  \"plugins\": [ { \"type\": \"ipvlan\" },\n";
    r.conf("05-broken.conflist", bad);
    let out = r.run(&["--skip-binaries"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "not ready  /etc/cni/net.d/05-broken.conflist: malformed network configuration: invalid JSON"
        ),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 not ready"));
    assert_eq!(r.read("etc/cni/net.d/05-broken.conflist"), bad);
    // The runtime skips it and loads the next file: that one is given the entry.
    assert_eq!(
        types(&r.read("etc/cni/net.d/10-pods.conflist")),
        ["ipvlan", "tombstone", "portmap"]
    );
    // The same for a list without a main plugin type.
    r.conf(
        "05-broken.conflist",
        r#"{"name":"x","plugins":[{"master":"eth0"}]}"#,
    );
    let out = r.run(&["--skip-binaries"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("plugin 0 has no \"type\""));
    // The uninstall takes the entry out of the others, and keeps the binaries in case the
    // file it cannot read names them.
    let out = r.run(&["--uninstall"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(r.read("etc/cni/net.d/10-pods.conflist"), PODS);
}

#[test]
fn named_networks_and_networks_that_are_not_ipvlan_based() {
    let r = node();
    // Only the named network, even one that is not IPvlan-based.
    r.ok(&["--network", "br", "--skip-binaries"]);
    assert_eq!(
        types(&r.read("etc/cni/net.d/30-br.conflist")),
        ["bridge", "tombstone"]
    );
    assert_eq!(r.read("etc/cni/net.d/10-pods.conflist"), PODS);
    assert_eq!(r.read("etc/cni/net.d/20-fast.conflist"), COMPACT);
    assert!(!r.file("opt/cni/bin/tombstone").exists());
    r.ok(&["--uninstall", "--network", "br"]);
    assert_eq!(r.read("etc/cni/net.d/30-br.conflist"), BRIDGE);

    let out = r.run(&["--network", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no network named \"nope\""));
    // Usage errors are exit 2.
    assert_eq!(r.run(&["--hold-seconds", "0"]).status.code(), Some(2));
}

#[test]
fn a_binary_that_fails_its_version_check_is_not_installed() {
    let r = node();
    let from = r.file("release");
    fs::create_dir_all(&from).unwrap();
    fs::copy(
        plugins_dir().join("tombstone-ipam"),
        from.join("tombstone-ipam"),
    )
    .unwrap();
    // A real program that is not a CNI plugin.
    fs::copy("/bin/true", from.join("tombstone")).unwrap();
    let before = r.snapshot();
    let out = Command::new(INSTALLER)
        .arg("--root")
        .arg(&r.path)
        .arg("--from")
        .arg(&from)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tombstone failed its VERSION check"), "{err}");
    assert_eq!(r.snapshot(), before);
    // A missing binary is as clear.
    fs::remove_file(from.join("tombstone")).unwrap();
    let out = Command::new(INSTALLER)
        .arg("--root")
        .arg(&r.path)
        .arg("--from")
        .arg(&from)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

// ---------------------------------------------------------------------------------------
// Issue 11: the node as the runtime sees it.

/// A directory outside every test root, with a decoy the installer must never touch.
fn outside(tag: &str) -> PathBuf {
    let d = scratch(&format!("outside-{tag}"));
    fs::create_dir_all(d.join("net.d")).unwrap();
    fs::create_dir_all(d.join("bin")).unwrap();
    fs::write(d.join("net.d/10-pods.conflist"), PODS).unwrap();
    d
}

#[test]
fn absolute_symlinks_are_resolved_under_the_root_as_a_chroot_would() {
    let r = Root::new("abs-links");
    let out_dir = outside("abs-links");
    // The node's /etc/cni/net.d and /opt/cni/bin are absolute links to the out_dir path:
    // on the node, that path is under the root.
    fs::remove_dir(r.file("etc/cni/net.d")).unwrap();
    std::os::unix::fs::symlink(out_dir.join("net.d"), r.file("etc/cni/net.d")).unwrap();
    fs::create_dir_all(r.file("opt/cni")).unwrap();
    std::os::unix::fs::symlink(out_dir.join("bin"), r.file("opt/cni/bin")).unwrap();
    let inside = r.path.join(out_dir.strip_prefix("/").unwrap());
    fs::create_dir_all(inside.join("net.d")).unwrap();
    fs::write(inside.join("net.d/10-pods.conflist"), PODS).unwrap();

    let out = r.ok(&["--hold-seconds", "30"]);
    // Nothing outside the root was touched.
    assert_eq!(
        fs::read_to_string(out_dir.join("net.d/10-pods.conflist")).unwrap(),
        PODS
    );
    assert_eq!(
        fs::read_dir(out_dir.join("bin")).unwrap().count(),
        0,
        "{out}"
    );
    assert_eq!(
        fs::read_dir(out_dir.join("net.d")).unwrap().count(),
        1,
        "{out}"
    );
    // The node's files, under the root, were.
    let pods = fs::read_to_string(inside.join("net.d/10-pods.conflist")).unwrap();
    assert_eq!(types(&pods), ["ipvlan", "tombstone", "portmap"], "{out}");
    assert!(inside.join("bin/tombstone").is_file(), "{out}");
    fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn dot_dots_and_relative_links_are_clamped_at_the_root() {
    let r = Root::new("dotdot");
    let out_dir = outside("dotdot");
    // `--conf-dir /../../<out_dir>` names <root>/<out_dir>, never the host's.
    let inside = r.path.join(out_dir.strip_prefix("/").unwrap());
    fs::create_dir_all(inside.join("net.d")).unwrap();
    fs::write(inside.join("net.d/10-pods.conflist"), PODS).unwrap();
    let conf_dir = format!("/../../..{}", out_dir.join("net.d").display());
    let out = r.ok(&["--skip-binaries", "--conf-dir", &conf_dir]);
    assert_eq!(
        fs::read_to_string(out_dir.join("net.d/10-pods.conflist")).unwrap(),
        PODS
    );
    let pods = fs::read_to_string(inside.join("net.d/10-pods.conflist")).unwrap();
    assert_eq!(types(&pods), ["ipvlan", "tombstone", "portmap"], "{out}");

    // A relative link climbing past the root stops at it.
    let depth = r.path.components().count() + 3;
    let climb = "../".repeat(depth);
    fs::remove_dir_all(r.file("etc/cni/net.d")).unwrap();
    std::os::unix::fs::symlink(
        format!(
            "{climb}{}",
            out_dir.join("net.d").strip_prefix("/").unwrap().display()
        ),
        r.file("etc/cni/net.d"),
    )
    .unwrap();
    fs::write(inside.join("net.d/10-pods.conflist"), PODS).unwrap();
    let out = r.ok(&["--skip-binaries"]);
    assert_eq!(
        fs::read_to_string(out_dir.join("net.d/10-pods.conflist")).unwrap(),
        PODS
    );
    let pods = fs::read_to_string(inside.join("net.d/10-pods.conflist")).unwrap();
    assert_eq!(types(&pods), ["ipvlan", "tombstone", "portmap"], "{out}");
    fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn the_live_host_needs_an_explicit_root() {
    // No --root: refused as a usage error before anything is read (even a dry run).
    let out = Command::new(INSTALLER)
        .args(["--dry-run", "--skip-binaries", "--conf-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--root"),
        "{out:?}"
    );
    // No arguments at all: the usage, exit 2.
    let out = Command::new(INSTALLER).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: tombstone-install"));
}

const MULTUS_INLINE: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "multus-cni-network",
  "type": "multus",
  "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
  "delegates": [
    {
      "cniVersion": "1.0.0",
      "name": "pods",
      "plugins": [
        { "type": "ipvlan", "master": "eth0", "ipam": { "type": "host-local", "subnet": "10.10.0.0/24" } },
        { "type": "portmap", "capabilities": { "portMappings": true } }
      ]
    }
  ]
}
"#;

#[test]
fn multus_first_gets_the_entry_in_its_inline_ipvlan_delegate() {
    let r = node();
    r.conf("00-multus.conf", MULTUS_INLINE);
    let out = r.ok(&["--skip-binaries", "--hold-seconds", "30"]);
    let multus = r.read("etc/cni/net.d/00-multus.conf");
    let v: serde_json::Value = serde_json::from_str(&multus).unwrap();
    let delegate_types: Vec<&str> = v["delegates"][0]["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(delegate_types, ["ipvlan", "tombstone", "portmap"], "{out}");
    assert!(multus.contains(
        "\"ipam\": { \"type\": \"host-local\", \"subnet\": \"10.10.0.0/24\" } },\n        { \"type\": \"tombstone\", \"holdSeconds\": 30 },\n"
    ), "{multus}");
    // The runtime loads 00-multus.conf: the other files are not edited, and said so.
    assert_eq!(r.read("etc/cni/net.d/10-pods.conflist"), PODS);
    assert!(
        out.contains("ignored    /etc/cni/net.d/10-pods.conflist (the runtime loads /etc/cni/net.d/00-multus.conf"),
        "{out}"
    );
    r.ok(&["--uninstall"]);
    assert_eq!(r.read("etc/cni/net.d/00-multus.conf"), MULTUS_INLINE);
}

#[test]
fn multus_cluster_network_by_name_or_from_the_api() {
    let r = node();
    let by_name = r#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig","clusterNetwork":"pods"}"#;
    r.conf("00-multus.conf", by_name);
    let out = r.ok(&["--skip-binaries"]);
    assert_eq!(r.read("etc/cni/net.d/00-multus.conf"), by_name);
    assert_eq!(
        types(&r.read("etc/cni/net.d/10-pods.conflist")),
        ["ipvlan", "tombstone", "portmap"],
        "{out}"
    );
    assert!(out.contains("clusterNetwork \"pods\""), "{out}");
    assert_eq!(r.read("etc/cni/net.d/20-fast.conflist"), COMPACT);

    let r = node();
    let from_api = r#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig","clusterNetwork":"kube-system/ipvlan-net"}"#;
    r.conf("00-multus.conf", from_api);
    let out = r.run(&["--skip-binaries"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("not edited"), "{stdout}");
    assert!(stdout.contains("NetworkAttachmentDefinition"), "{stdout}");
    assert_eq!(r.read("etc/cni/net.d/10-pods.conflist"), PODS);
}

#[test]
fn terway_ipvlan_is_ipvlan_based_and_a_misplaced_entry_is_moved() {
    let r = Root::new("terway");
    let terway = "{\n  \"cniVersion\": \"0.4.0\",\n  \"name\": \"terway\",\n  \"plugins\": [\n    { \"type\": \"terway\", \"eniip_virtual_type\": \"IPVlan\" },\n    { \"type\": \"cilium-cni\" }\n  ]\n}\n";
    r.conf("10-terway.conflist", terway);
    let out = r.ok(&["--skip-binaries"]);
    assert_eq!(
        types(&r.read("etc/cni/net.d/10-terway.conflist")),
        ["terway", "tombstone", "cilium-cni"],
        "{out}"
    );

    let r = Root::new("misplaced");
    let misplaced = "{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \"pods\",\n  \"plugins\": [\n    { \"type\": \"tombstone\", \"holdSeconds\": 20 },\n    { \"type\": \"ipvlan\", \"master\": \"eth0\" }\n  ]\n}\n";
    r.conf("10-pods.conflist", misplaced);
    let out = r.ok(&["--skip-binaries"]);
    assert!(out.contains("misplaced"), "{out}");
    assert!(!out.contains("not IPvlan-based"), "{out}");
    let now = r.read("etc/cni/net.d/10-pods.conflist");
    assert_eq!(types(&now), ["ipvlan", "tombstone"], "{out}");
    assert!(now.contains("\"holdSeconds\": 20"), "{now}");
}

#[test]
fn two_files_of_one_network_only_the_loaded_one_is_edited() {
    let r = Root::new("dup");
    r.conf("10-pods.conflist", PODS);
    r.conf("20-pods-old.conflist", PODS);
    let out = r.ok(&["--skip-binaries"]);
    assert_eq!(
        types(&r.read("etc/cni/net.d/10-pods.conflist")),
        ["ipvlan", "tombstone", "portmap"]
    );
    assert_eq!(r.read("etc/cni/net.d/20-pods-old.conflist"), PODS);
    assert!(
        out.contains(
            "warning: network \"pods\" is also defined in /etc/cni/net.d/20-pods-old.conflist"
        ),
        "{out}"
    );
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let r = node();
    r.conf("05-broken.conflist", "{\n  \"name\": \"broken\",\n");
    // A link to nothing and a link to a directory: each its own failure.
    std::os::unix::fs::symlink(
        "/nowhere.conflist",
        r.file("etc/cni/net.d/06-gone.conflist"),
    )
    .unwrap();
    fs::create_dir_all(r.file("srv")).unwrap();
    std::os::unix::fs::symlink("/srv", r.file("etc/cni/net.d/07-dir.conflist")).unwrap();
    let out = r.run(&["--skip-binaries", "--network", "pods", "--network", "fast"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    for f in ["05-broken", "06-gone", "07-dir"] {
        assert!(
            stdout.contains(&format!("not ready  /etc/cni/net.d/{f}.conflist")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("a symbolic link to /nowhere.conflist, which is not there"),
        "{stdout}"
    );
    assert_eq!(
        types(&r.read("etc/cni/net.d/10-pods.conflist")),
        ["ipvlan", "tombstone", "portmap"]
    );
    assert_eq!(
        types(&r.read("etc/cni/net.d/20-fast.conflist")),
        ["ipvlan", "tombstone"]
    );
}

#[test]
fn a_regenerated_conf_is_converted_again() {
    let r = Root::new("regen");
    r.conf("40-legacy.conf", SINGLE);
    r.ok(&["--skip-binaries"]);
    assert!(!r.file("etc/cni/net.d/40-legacy.conf").exists());
    // The network's own daemon writes its .conf again; the runtime loads it first.
    let regenerated = SINGLE.replace("eth2", "eth5");
    r.conf("40-legacy.conf", &regenerated);
    let out = r.ok(&["--skip-binaries"]);
    assert!(!r.file("etc/cni/net.d/40-legacy.conf").exists(), "{out}");
    let list = r.read("etc/cni/net.d/40-legacy.conflist");
    assert_eq!(types(&list), ["ipvlan", "tombstone"]);
    assert!(list.contains("eth5"), "{list}");
    r.ok(&["--uninstall"]);
    assert_eq!(r.read("etc/cni/net.d/40-legacy.conf"), regenerated);
    assert!(!r.file("etc/cni/net.d/40-legacy.conflist").exists());
}

#[test]
fn a_symlinked_conflist_is_replaced_by_a_file_and_the_link_comes_back() {
    let r = Root::new("linked");
    fs::create_dir_all(r.file("srv")).unwrap();
    fs::write(r.file("srv/pods.conflist"), PODS).unwrap();
    // Absolute, as on the node: re-rooted.
    std::os::unix::fs::symlink(
        "/srv/pods.conflist",
        r.file("etc/cni/net.d/10-pods.conflist"),
    )
    .unwrap();
    let out = r.ok(&["--skip-binaries"]);
    let link = r.file("etc/cni/net.d/10-pods.conflist");
    assert!(
        fs::symlink_metadata(&link).unwrap().file_type().is_file(),
        "{out}"
    );
    assert_eq!(
        types(&r.read("etc/cni/net.d/10-pods.conflist")),
        ["ipvlan", "tombstone", "portmap"]
    );
    assert_eq!(r.read("srv/pods.conflist"), PODS);
    assert!(out.contains("symbolic link"), "{out}");
    r.ok(&["--uninstall"]);
    assert_eq!(
        fs::read_link(&link).unwrap(),
        PathBuf::from("/srv/pods.conflist")
    );
}

#[test]
fn a_list_the_plugins_cannot_serve_is_not_edited() {
    let r = Root::new("old-version");
    let old = PODS.replace("\"1.0.0\"", "\"0.2.0\"");
    r.conf("10-pods.conflist", &old);
    let out = r.run(&["--skip-binaries"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("cniVersion \"0.2.0\""), "{stdout}");
    assert!(stdout.contains("0.3.0"), "{stdout}");
    assert_eq!(r.read("etc/cni/net.d/10-pods.conflist"), old);
}

const IPAM_20: &str = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"tombstone-ipvlan","master":"eth0","ipam":{"type":"tombstone-ipam","ranges":[[{"subnet":"10.1.0.0/24"}]],"reuseAfterSeconds":20}}]}"#;

#[test]
fn a_hold_not_below_the_ipam_reuse_delay_is_refused() {
    let r = Root::new("hold");
    r.conf("10-pods.conflist", IPAM_20);
    let out = r.run(&["--skip-binaries", "--hold-seconds", "60"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("holdSeconds 60") && stdout.contains("reuseAfterSeconds 20"),
        "{stdout}"
    );
    assert_eq!(r.read("etc/cni/net.d/10-pods.conflist"), IPAM_20);
    // The installer's default hold is below tombstone-ipam's default reuse delay.
    let r = Root::new("hold-default");
    let default_reuse = IPAM_20.replace(",\"reuseAfterSeconds\":20", "");
    r.conf("10-pods.conflist", &default_reuse);
    let out = r.ok(&[
        "--skip-binaries",
        "--external-sweeper",
        "--plugin-state-dir",
        "/run/x",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&r.read("etc/cni/net.d/10-pods.conflist")).unwrap();
    let entry = &v["plugins"][1];
    assert_eq!(entry["type"], "tombstone", "{out}");
    assert!(entry["holdSeconds"].as_u64().unwrap() < 60, "{entry}");
    assert_eq!(entry["sweeper"], false, "{entry}");
    assert_eq!(entry["stateDir"], "/run/x", "{entry}");
}
