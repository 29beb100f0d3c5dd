//! One podman of the test's own (Debian's 4.x, CNI backend, runc, `vfs` storage): its root,
//! runroot, tmpdir, containers.conf, storage.conf, CNI config and plugin directories in one
//! temporary directory. Every podman command runs in a mount namespace held by a `sleep` of
//! ours, where that directory's `run/` and `varlib/` are mounted over `/run` and `/var/lib`
//! (podman puts its netns files in `/run/netns` and libcni its cache in `/var/lib/cni`).
//!
//! Dropping it (even when the test fails) removes its containers, kills what is left of
//! them, the holder, the bridge, tombstone routes of the subnet, its cgroups and the directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// What one instance is made of.
pub struct Setup<'a> {
    /// A short name: its directory's and cgroup parent's suffix.
    pub name: &'a str,
    /// The network's conflist (JSON text); its `name` is the network podman runs pods on.
    pub conflist: String,
    /// The bridge the conflist's main plugin creates (deleted on drop).
    pub bridge: &'a str,
    /// The pod subnet's prefix ("172.30.84."): routes of its addresses are ours to remove.
    pub subnet_prefix: &'a str,
    /// CNI plugins: (name in the bin dir, target). A target that is a script's text (it
    /// starts with `#!`) is written as an executable file, else it is linked.
    pub plugins: Vec<(String, String)>,
}

pub struct Podman {
    pub dir: PathBuf,
    pub cgroup_parent: String,
    /// libcni's cached results, as the holder's mount namespace sees at `/var/lib/cni/results`.
    pub cni_cache: PathBuf,
    bridge: String,
    subnet_prefix: String,
    holder: Option<Child>,
}

/// An instance's directory.
pub fn dir_of(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cni-podman-{}-{name}", std::process::id()))
}

/// Fails the test naming the package when a tool is missing.
pub fn require_tools() {
    for (tool, version, package) in [
        ("podman", "--version", "podman"),
        ("conmon", "--version", "conmon"),
        ("runc", "--version", "runc"),
        ("jq", "--version", "jq"),
        ("bash", "--version", "bash"),
        ("unshare", "--version", "util-linux"),
        ("nsenter", "--version", "util-linux"),
        ("ip", "-V", "iproute2"),
    ] {
        let found = Command::new(tool)
            .arg(version)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool} {version}` failed: install {package} (conformance/vm/install-deps.sh, \
             run by `make deps`)"
        );
    }
    for plugin in ["bridge", "loopback"] {
        let p = Path::new("/usr/lib/cni").join(plugin);
        assert!(
            p.is_file(),
            "{} not found: install containernetworking-plugins (make deps)",
            p.display()
        );
    }
}

fn containers_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"# Only this file is read (CONTAINERS_CONF): nothing of the machine's containers.conf.
[network]
network_backend = "cni"
cni_plugin_dirs = ["{d}/bin"]
network_config_dir = "{d}/net.d"
default_network = "unused"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"
static_dir = "{d}/root/libpod"
volume_path = "{d}/root/volumes"
"#
    )
}

fn storage_conf(dir: &Path) -> String {
    let d = dir.display();
    format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n")
}

impl Podman {
    /// Lays out the directory and starts the mount namespace's holder.
    pub fn start(setup: Setup) -> Podman {
        let dir = dir_of(setup.name);
        let _ = fs::remove_dir_all(&dir);
        for sub in [
            "bin", "net.d", "run/lock", "varlib", "root", "runroot", "tmp",
        ] {
            fs::create_dir_all(dir.join(sub)).expect("create the instance's directories");
        }
        for (name, target) in &setup.plugins {
            let path = dir.join("bin").join(name);
            if target.starts_with("#!") {
                fs::write(&path, target).expect("write a plugin script");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .expect("chmod a plugin script");
            } else {
                std::os::unix::fs::symlink(target, &path).expect("link a plugin");
            }
        }
        fs::write(dir.join("net.d/10-podman-test.conflist"), &setup.conflist)
            .expect("write the conflist");
        fs::write(dir.join("containers.conf"), containers_conf(&dir))
            .expect("write containers.conf");
        fs::write(dir.join("storage.conf"), storage_conf(&dir)).expect("write storage.conf");
        // No registry: the pods run from a root filesystem, never an image.
        fs::write(dir.join("registries.conf"), "").expect("write registries.conf");
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /run && mount --bind "$2" /var/lib && touch "$3" && exec sleep 86400"#)
            .arg("sh")
            .arg(dir.join("run"))
            .arg(dir.join("varlib"))
            .arg(dir.join("mounted"))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare ... sleep");
        let me = Podman {
            cni_cache: dir.join("varlib/cni/results"),
            cgroup_parent: format!("/cni-podman-{}-{}", std::process::id(), setup.name),
            bridge: setup.bridge.to_string(),
            subnet_prefix: setup.subnet_prefix.to_string(),
            dir,
            holder: Some(holder),
        };
        assert!(
            tombstone_testkit::eventually(10, || me.dir.join("mounted").exists()),
            "the mount namespace's holder did not mount /run and /var/lib"
        );
        me
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// A command in the holder's mount namespace, the environment cleared but for `PATH`.
    fn in_ns(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.holder_pid()))
            .arg("--")
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null());
        cmd
    }

    /// The environment and global flags of the instance's podman commands.
    fn podman_env_and_flags(&self) -> (Vec<(&'static str, String)>, Vec<String>) {
        let d = |p: &str| self.dir.join(p).display().to_string();
        let env = vec![
            ("CONTAINERS_CONF", d("containers.conf")),
            ("CONTAINERS_STORAGE_CONF", d("storage.conf")),
            ("CONTAINERS_REGISTRIES_CONF", d("registries.conf")),
        ];
        let mut flags = vec![
            "--root".to_string(),
            d("root"),
            "--runroot".into(),
            d("runroot"),
            "--tmpdir".into(),
            d("tmp"),
            "--network-backend".into(),
            "cni".into(),
            "--network-config-dir".into(),
            d("net.d"),
        ];
        flags
            .extend(["--cgroup-manager", "cgroupfs", "--events-backend", "file"].map(String::from));
        (env, flags)
    }

    /// `podman ARGS` with the instance's configuration, as a podman user's shell runs it.
    pub fn podman(&self, args: &[&str]) -> Output {
        let (env, flags) = self.podman_env_and_flags();
        self.in_ns("podman")
            .envs(env)
            .args(flags)
            .args(args)
            .output()
            .expect("spawn nsenter ... podman")
    }

    /// A shell function `podman` running this instance's podman (for a script written for a
    /// machine's own podman).
    pub fn shell_function(&self) -> String {
        let (env, flags) = self.podman_env_and_flags();
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}='{v}'")).collect();
        let flags: Vec<String> = flags.iter().map(|f| format!("'{f}'")).collect();
        format!(
            "podman() {{ env {} nsenter --mount=/proc/{}/ns/mnt -- podman {} \"$@\"; }}\n",
            env.join(" "),
            self.holder_pid(),
            flags.join(" ")
        )
    }

    /// `podman ARGS`, its stdout when it succeeds, else its stderr in the error.
    pub fn ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.podman(args);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "podman {}: {}\n{stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs a detached pod `name` on `network` from a root filesystem of its own holding
    /// `pause` (`--rootfs`), with `extra` flags; its full container id.
    pub fn run(
        &self,
        name: &str,
        network: &str,
        pause: &Path,
        extra: &[&str],
    ) -> Result<String, String> {
        let rootfs = self.dir.join(format!("rootfs-{name}"));
        for d in ["dev", "proc", "sys", "etc", "tmp", "run"] {
            fs::create_dir_all(rootfs.join(d)).expect("create the rootfs");
        }
        fs::copy(pause, rootfs.join("pause")).expect("copy pause into the rootfs");
        let rootfs = rootfs.display().to_string();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--cgroup-parent",
            &self.cgroup_parent,
            // Lower than the runner's: raising a limit needs CAP_SYS_RESOURCE, which a test
            // runner may lack (podman's defaults are 1048576 files and 4194304 processes).
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        args.extend(extra);
        args.extend(["--rootfs", &rootfs, "/pause"]);
        self.ok(&args)
    }

    /// `podman inspect --format FORMAT NAME`.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `args` in the holder's mount namespace (where the netns files are mounted).
    pub fn in_mount_ns(&self, args: &[&str]) -> Output {
        self.in_ns(args[0])
            .args(&args[1..])
            .output()
            .expect("spawn nsenter")
    }

    /// The conmons of this instance (their command line names its root) and their children
    /// (the pods' processes); zombies are not counted.
    pub fn processes(&self) -> Vec<u32> {
        let root = self.dir.join("root").to_string_lossy().into_owned();
        let mut conmons = Vec::new();
        let mut parents = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("");
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            if state == "Z" {
                continue;
            }
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline);
            if text.starts_with("/usr/bin/conmon") && text.contains(&root) {
                conmons.push(pid);
            }
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
        let mut all = conmons.clone();
        all.extend(
            parents
                .iter()
                .filter(|(_, pp)| conmons.contains(pp))
                .map(|(p, _)| *p),
        );
        all
    }

    /// Cgroup directories under this instance's cgroup parent, in every hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for h in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let base = h.path().join(self.cgroup_parent.trim_start_matches('/'));
            walk_dirs(&base, &mut found);
        }
        found
    }
}

/// `dir` and every directory under it, deepest first.
fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_dirs(&e.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        for _ in 0..3 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        for cg in self.cgroups() {
            let _ = fs::remove_dir(cg);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let routes = Command::new("ip")
            .args(["-o", "route", "show", "table", "main", "proto", "84"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for line in routes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 1 && f[1].starts_with(&self.subnet_prefix) {
                let mut args = vec!["route", "del"];
                args.extend(&f);
                let _ = Command::new("ip").args(&args).output();
            }
        }
        // The mounts lived in the holder's mount namespace, gone with it: plain directories.
        let _ = fs::remove_dir_all(&self.dir);
    }
}
