//! The image, built by `install/image.sh` (what `make image` runs: buildah, vfs, offline) and
//! run under a real podman of the test's own as the DaemonSet runs it: the manifest's command
//! line with the ConfigMap's settings (a free loopback port for `--listen`), its host mounts
//! pointed at a temporary node root, its capabilities and memory limit, the host network.
//! Asserts the node gets installed, `/readyz` waits for the primary's conflist then answers
//! 200, a rewrite of that conflist is repaired, `podman stop` ends the agent with exit 0
//! leaving the node installed, and nothing of the container or its storage is left.
//! **Needs root, buildah and podman** (`make deps`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{PODS, daemonset, free_port, has_entry, replace, try_get};
use tombstone_testkit::podman::{self, Podman};
use tombstone_testkit::require_root;

const INSTALLER: &str = env!("CARGO_BIN_EXE_tombstone-install");
const NAME: &str = "tombstone-agent";

/// The release directory the binaries are built in, and the cargo target dir above it
/// (`<target>/<host tuple>/release`).
fn release_and_target() -> (PathBuf, PathBuf) {
    let release = Path::new(INSTALLER).parent().unwrap().to_path_buf();
    let target = release
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    (release, target)
}

/// Runs `install/image.sh ARCHIVE` as `make image` does, for this build's target dir.
fn build_image(archive: &Path) {
    let (_, target) = release_and_target();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(workspace.join("install/image.sh"))
        .arg(archive)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("spawn bash install/image.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "install/image.sh: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(archive.is_file(), "no archive at {}", archive.display());
    for line in stdout.lines().filter(|l| l.starts_with("image: ")) {
        println!("{line}");
    }
    println!(
        "install/image.sh took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The container's logs, for a failure's message.
fn logs(pm: &Podman) -> String {
    let out = pm.podman(&["logs", NAME]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits up to `within` for `ok`, the container still running (asked of podman every half
/// second, not to slow the polling); panics with `what` and the container's logs otherwise.
/// Returns how long it took.
fn until(pm: &Podman, within: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    let mut asked = started;
    loop {
        if ok() {
            return started.elapsed();
        }
        if asked.elapsed() >= Duration::from_millis(500) {
            let running = pm.inspect(NAME, "{{.State.Running}}");
            assert!(
                running == "true",
                "the agent's container stopped\n{}",
                logs(pm)
            );
            asked = Instant::now();
        }
        assert!(
            started.elapsed() < within,
            "not within {within:?}: {what}\n{}",
            logs(pm)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary node root, removed when dropped.
struct NodeRoot(PathBuf);

impl Drop for NodeRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs root, buildah, podman"]
fn image_root_runs_as_the_daemonset_runs_it() {
    require_root();
    podman::require_tools(&[("buildah", "--version", "buildah")]);
    let pm = Podman::start("image");
    let archive = pm.dir.join("tombstone-cni.oci.tar");
    build_image(&archive);

    // The node: the DaemonSet's hostPath directories (DirectoryOrCreate) under a root of ours.
    let node = NodeRoot(std::env::temp_dir().join(format!("ts-image-node-{}", std::process::id())));
    let _ = fs::remove_dir_all(&node.0);
    let text = daemonset::text();
    let port = free_port();
    let mut settings = daemonset::settings(&text);
    for (k, v) in &mut settings {
        if k == "LISTEN" {
            *v = format!("127.0.0.1:{port}");
        }
    }
    let setting = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key} in the ConfigMap"))
            .1
            .clone()
    };
    let mut run: Vec<String> = ["run", "-d", "--name", NAME, "--network", "host"]
        .map(String::from)
        .into();
    run.extend(["--cgroup-parent".into(), pm.cgroup_parent.clone()]);
    run.extend(podman::RUN_LIMITS.map(String::from));
    // securityContext: runAsUser 0, allowPrivilegeEscalation false, all capabilities dropped
    // but the listed ones; resources.limits.memory.
    run.extend(
        [
            "--user",
            "0",
            "--security-opt",
            "no-new-privileges",
            "--cap-drop",
            "all",
        ]
        .map(String::from),
    );
    for cap in daemonset::added_capabilities(&text) {
        run.extend(["--cap-add".into(), cap]);
    }
    let memory = daemonset::memory_limit(&text);
    run.extend([
        "--memory".into(),
        memory.trim_end_matches("i").to_lowercase(),
    ]);
    for (k, v) in &settings {
        run.extend(["--env".into(), format!("{k}={v}")]);
    }
    for (host, mount) in daemonset::host_mounts(&text) {
        let source = node.0.join(host.trim_start_matches('/'));
        fs::create_dir_all(&source).unwrap();
        run.extend(["--volume".into(), format!("{}:{mount}", source.display())]);
    }
    // The manifest's `command` replaces the image's entrypoint, as in a pod.
    let command = daemonset::command(&text, &settings);
    run.extend([
        "--entrypoint".into(),
        serde_json::to_string(&command).unwrap(),
    ]);

    let loaded = pm
        .ok(&["load", "--input", &archive.display().to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let image = loaded
        .lines()
        .find_map(|l| l.split_once("Loaded image").map(|(_, r)| r))
        .and_then(|r| r.split_once(": "))
        .map(|(_, name)| name.trim().to_string())
        .unwrap_or_else(|| panic!("podman load said no image name: {loaded}"));
    println!("loaded {image}; running {}", command.join(" "));
    run.push(image);
    let args: Vec<&str> = run.iter().map(String::as_str).collect();
    pm.ok(&args).unwrap_or_else(|e| panic!("{e}"));

    // Installed onto the node root, waiting for the primary: not ready, saying why.
    let conf_dir = node.0.join("etc/cni/net.d");
    let (release, _) = release_and_target();
    until(
        &pm,
        Duration::from_secs(30),
        "/readyz says it waits for the primary",
        || {
            try_get(port, "/readyz")
                .is_some_and(|(c, b)| c == 503 && b.contains("waiting for the primary CNI"))
        },
    );
    for bin in ["tombstone", "tombstone-ipam", "tombstone-ipvlan"] {
        let installed = fs::read(node.0.join("opt/cni/bin").join(bin)).unwrap_or_default();
        assert!(
            installed == fs::read(release.join(bin)).unwrap(),
            "{bin} is not the release binary in the node's /opt/cni/bin"
        );
    }
    assert!(
        node.0
            .join("etc/iproute2/rt_protos.d/tombstone.conf")
            .is_file()
    );
    assert_eq!(try_get(port, "/healthz").map(|r| r.0), Some(200));

    // The primary writes its conflist (0.3.1, as Calico and Flannel do): the entry goes in.
    let conflist = conf_dir.join("10-pods.conflist");
    let primary = PODS.replace("\"1.0.0\"", "\"0.3.1\"");
    fs::write(&conflist, &primary).unwrap();
    let took = until(
        &pm,
        Duration::from_secs(5),
        "ready, the entry in place",
        || try_get(port, "/readyz").is_some_and(|(c, _)| c == 200),
    );
    println!(
        "ready {:.2} s after the primary's conflist",
        took.as_secs_f64()
    );
    let edited = fs::read_to_string(&conflist).unwrap();
    for want in [
        format!("\"stateDir\": \"{}\"", setting("STATE_DIR")),
        format!("\"holdSeconds\": {}", setting("HOLD_SECONDS")),
        "\"sweeper\": false".to_string(),
    ] {
        assert!(edited.contains(&want), "{want} not in the entry:\n{edited}");
    }

    // The primary rewrites its file, the entry gone: repaired within seconds.
    replace(&conflist, &primary.replace("eth0", "eth1"));
    let took = until(
        &pm,
        Duration::from_secs(3),
        "the rewritten conflist repaired",
        || fs::read_to_string(&conflist).is_ok_and(|t| t.contains("eth1")) && has_entry(&conflist),
    );
    println!("repaired {:.2} s after the rewrite", took.as_secs_f64());
    until(&pm, Duration::from_secs(3), "ready again", || {
        try_get(port, "/readyz").is_some_and(|(c, _)| c == 200)
    });

    // `podman stop`: SIGTERM, as a rolling update sends; exit 0 (not the SIGKILL after the
    // grace period), the node left installed.
    let grace = daemonset::grace_period_seconds(&text);
    let started = Instant::now();
    pm.ok(&["stop", "--time", &grace, NAME])
        .unwrap_or_else(|e| panic!("{e}"));
    println!("stopped in {:.2} s", started.elapsed().as_secs_f64());
    let code = pm.inspect(NAME, "{{.State.ExitCode}}");
    let log = logs(&pm);
    assert_eq!(code, "0", "the agent's exit status after SIGTERM\n{log}");
    assert!(
        log.contains("the entries and binaries stay in place"),
        "{log}"
    );
    assert!(has_entry(&conflist), "the entry went with the container");
    assert!(node.0.join("opt/cni/bin/tombstone").is_file());

    // Nothing left: the container, the image, the instance's storage and directory.
    pm.ok(&["rm", NAME]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pm.ok(&["ps", "--all", "--quiet"]).unwrap(),
        "",
        "containers left"
    );
    pm.ok(&["rmi", "--all"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pm.ok(&["images", "--quiet"]).unwrap(), "", "images left");
    let dir = pm.dir.clone();
    let left = pm.close();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!dir.exists(), "{} left", dir.display());
}
