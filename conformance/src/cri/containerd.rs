//! One containerd of the test's own: its root, state, sockets, config and CNI directories in
//! one temporary directory, run in a private mount namespace where that directory's `run/`
//! and `varlib/` are mounted over `/run` and `/var/lib` (containerd 1.6 puts its shim
//! sockets in `/run/containerd` and libcni its cache in `/var/lib/cni` whatever the config
//! says). Nothing of the machine's containerd or CNI set-up is read or written.
//!
//! Dropping it (even when the test fails) kills its shims and their sandbox processes,
//! stops containerd, removes its cgroups, its bridge, tombstone routes, and the directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tombstone_testkit::runtime;

use super::image::PAUSE_IMAGE;
use super::node::TOMBSTONE_PROTOCOL;
use crate::harness::tools::REFERENCE_PLUGINS;

/// What one instance is made of.
pub struct Setup<'a> {
    /// A short name: its directory's and cgroup parent's suffix.
    pub name: &'a str,
    /// The conflist (JSON text) written to its CNI conf dir.
    pub conflist: String,
    /// The node's link the pods hang on.
    pub node_link: NodeLink,
    /// The pod subnet's prefix ("172.30.81."): routes of its addresses are ours to remove.
    pub subnet_prefix: &'a str,
    /// CNI plugins: (name in the bin dir, target). A target that is a script's text (it
    /// starts with `#!`) is written as an executable file, else it is linked.
    pub plugins: Vec<(String, String)>,
}

/// The node's link of an instance's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeLink {
    /// A bridge the main plugin creates: the pods' veths are its ports; deleted on drop.
    Bridge(String),
    /// An IPvlan master of the node's (kept): the pods' links live in their netns, only the
    /// node's gateway ports (`gw*`) are stacked on it in the node's namespace.
    Master(String),
}

impl NodeLink {
    /// How many of [`NodeLink::pod_links`] one running pod adds: its veth on a bridge; none
    /// on an IPvlan master (its link lives in its netns).
    pub fn links_per_pod(&self) -> usize {
        match self {
            NodeLink::Bridge(_) => 1,
            NodeLink::Master(_) => 0,
        }
    }

    /// The pods' links left in the node's namespace: the bridge's ports, or what is stacked
    /// on the master other than a gateway port.
    pub fn pod_links(&self) -> Vec<String> {
        match self {
            NodeLink::Bridge(bridge) => super::node::bridge_ports(bridge),
            NodeLink::Master(master) => super::node::stacked_on(master)
                .into_iter()
                .filter(|l| !l.starts_with("gw"))
                .collect(),
        }
    }
}

pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    /// libcni's cache, as containerd's mount namespace sees at `/var/lib/cni`.
    pub cni_cache: PathBuf,
    /// The IPAM data directory the conflist should name ([`ipam_dir`]): the leak checks look there.
    pub ipam_dir: PathBuf,
    /// The pods' link on the node, by kind and name.
    pub node_link: NodeLink,
    /// The pod subnet's prefix ("172.30.81."): routes of its addresses are this instance's.
    pub subnet_prefix: String,
    child: Option<Child>,
}

/// The directory of the instance called `name` (its conflist's IPAM `dataDir` is [`ipam_dir`]).
pub fn dir_of(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cni-cri-{}-{name}", std::process::id()))
}

/// The IPAM data directory of the instance called `name`, where the leak checks look.
pub fn ipam_dir(name: &str) -> PathBuf {
    dir_of(name).join("ipam")
}

fn config_toml(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Only what a CRI sandbox needs: no /opt plugin dir, no snapshotter but native, no tracing.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # The sandbox's oom_score_adj (-998) is not lowered below the runtime's own: a test runner
  # may lack CAP_SYS_RESOURCE (runc's nsexec then fails with EACCES).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/bin"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
"#,
        socket = socket.display()
    )
}

/// Fails the test naming the package when a tool or one of the reference `plugins` is missing.
pub fn require_tools(plugins: &[&str]) {
    runtime::require_tools(&[
        ("containerd", "--version", "containerd"),
        ("ctr", "--version", "containerd"),
        ("runc", "--version", "runc"),
        ("unshare", "--version", "util-linux"),
        ("nsenter", "--version", "util-linux"),
        ("ip", "-V", "iproute2"),
    ]);
    for plugin in plugins.iter().chain(&["loopback"]) {
        let p = Path::new(REFERENCE_PLUGINS).join(plugin);
        assert!(
            p.is_file(),
            "{} not found: install containernetworking-plugins (make deps)",
            p.display()
        );
    }
}

impl Containerd {
    /// Lays out the directory, starts containerd and imports the pause image into it.
    pub fn start(setup: Setup, pause_image: &Path) -> Containerd {
        let dir = dir_of(setup.name);
        let _ = fs::remove_dir_all(&dir);
        for sub in ["bin", "net.d", "run", "varlib/cni", "root", "state"] {
            fs::create_dir_all(dir.join(sub)).expect("create the instance's directories");
        }
        let socket = dir.join("containerd.sock");
        let mut me = Containerd {
            cni_cache: dir.join("varlib/cni"),
            ipam_dir: ipam_dir(setup.name),
            cgroup_parent: format!("/cni-cri-{}-{}", std::process::id(), setup.name),
            socket: socket.clone(),
            node_link: setup.node_link.clone(),
            subnet_prefix: setup.subnet_prefix.to_string(),
            dir: dir.clone(),
            child: None,
        };
        runtime::install_plugins(&dir.join("bin"), &setup.plugins);
        fs::write(dir.join("net.d/10-cri-test.conflist"), &setup.conflist)
            .expect("write the conflist");
        let config = dir.join("config.toml");
        fs::write(&config, config_toml(&dir, &socket)).expect("write config.toml");
        let log = fs::File::create(dir.join("containerd.log")).expect("create containerd.log");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /run && mount --bind "$2" /var/lib && exec containerd --config "$3""#)
            .arg("sh")
            .arg(dir.join("run"))
            .arg(dir.join("varlib"))
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn unshare ... containerd");
        me.child = Some(child);
        // Generous: containerd starts in seconds under emulation (the VM).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !socket.exists() {
            if let Some(Ok(Some(status))) = me.child.as_mut().map(|c| c.try_wait()) {
                panic!("containerd exited ({status}) at start:\n{}", me.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not open {} within 60 s:\n{}",
                socket.display(),
                me.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&socket)
            .args([
                "-n",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                "native",
            ])
            .arg(pause_image)
            .output()
            .expect("spawn ctr images import");
        assert!(
            out.status.success(),
            "ctr images import: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        me
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs `args` in containerd's mount namespace (where the netns files are mounted), under
    /// containerd's root directory: entering a mount namespace resets the root to the
    /// namespace's, which is not ours when we run chrooted (the VM guest's view of the host).
    pub fn in_mount_ns(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.pid()))
            .arg(format!("--root=/proc/{}/root", self.pid()))
            .arg("--")
            .args(args)
            .output()
            .expect("spawn nsenter")
    }

    /// The shims serving this containerd (their command line names its socket), and their
    /// children (the sandbox processes).
    pub fn processes(&self) -> Vec<u32> {
        let socket = self.socket.to_string_lossy().into_owned();
        runtime::processes(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.windows(2)
                .any(|w| w[0] == b"-address" && w[1] == socket.as_bytes())
        })
    }

    /// libcni's cached results (one file per attachment) in this instance's cache dir.
    pub fn cached_results(&self) -> Vec<String> {
        fs::read_dir(self.cni_cache.join("results"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Cgroup directories under this instance's cgroup parent, in every hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        runtime::cgroups(&self.cgroup_parent)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The sandbox processes and shims first: they outlive containerd otherwise.
        runtime::kill_until_gone(|| self.processes());
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for cg in self.cgroups() {
            let _ = fs::remove_dir(cg);
        }
        if let NodeLink::Bridge(bridge) = &self.node_link {
            let _ = Command::new("ip").args(["link", "del", bridge]).output();
        }
        // Tombstones of our subnet (those the test's end did not see expire).
        runtime::remove_typed_routes(TOMBSTONE_PROTOCOL, &self.subnet_prefix);
        // The mounts were made in containerd's mount namespace, gone with its last process.
        let _ = fs::remove_dir_all(&self.dir);
    }
}
