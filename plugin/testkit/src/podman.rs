//! A podman of the test's own (Debian's 4.x, runc, `vfs` storage, file locks, CNI backend):
//! its root, runroot, tmpdir, locks, containers.conf, storage.conf, registries.conf and CNI
//! `bin/` and `net.d/` in one temporary directory; nothing of the machine's container storage
//! or configuration is read or written. Every podman command runs in a mount namespace held by
//! a `sleep` of ours, where that directory's `run/` and `varlib/` are mounted over `/run` and
//! `/var/lib` (podman's netns files, libcni's cache and the containers' shm mounts stay there).
//!
//! Dropping it (even when the test fails) removes its containers, kills what is left of them,
//! the holder, its cgroups and the directory; [`Podman::close`] does the same and says what
//! could not be removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::runtime;

/// `podman run` flags every container of a test needs: limits lower than the runner's, since
/// raising one needs CAP_SYS_RESOURCE, which a test runner may lack (podman's defaults are
/// 1048576 files and 4194304 processes).
pub const RUN_LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

pub struct Podman {
    pub dir: PathBuf,
    pub cgroup_parent: String,
    holder: Option<Child>,
}

/// An instance's directory.
pub fn dir_of(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cni-podman-{}-{name}", std::process::id()))
}

/// Fails the test naming the package when a tool podman needs, or one of `extra` (tool, its
/// version flag, its Debian package), is missing.
pub fn require_tools(extra: &[(&str, &str, &str)]) {
    let base = [
        ("podman", "--version", "podman"),
        ("conmon", "--version", "conmon"),
        ("runc", "--version", "runc"),
        ("unshare", "--version", "util-linux"),
        ("nsenter", "--version", "util-linux"),
    ];
    let all: Vec<_> = base.iter().chain(extra).copied().collect();
    runtime::require_tools(&all);
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
# Locks in tmp_dir, not in the shared memory segment every podman of the machine uses.
lock_type = "file"
"#
    )
}

fn storage_conf(dir: &Path) -> String {
    let d = dir.display();
    format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n")
}

impl Podman {
    /// Lays out the directory of instance `name` and starts the mount namespace's holder.
    pub fn start(name: &str) -> Podman {
        let dir = dir_of(name);
        let _ = fs::remove_dir_all(&dir);
        for sub in [
            "bin", "net.d", "run/lock", "varlib", "root", "runroot", "tmp",
        ] {
            fs::create_dir_all(dir.join(sub)).expect("create the instance's directories");
        }
        fs::write(dir.join("containers.conf"), containers_conf(&dir))
            .expect("write containers.conf");
        fs::write(dir.join("storage.conf"), storage_conf(&dir)).expect("write storage.conf");
        // No registry: containers run from a root filesystem or an image archive.
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
            cgroup_parent: format!("/cni-podman-{}-{name}", std::process::id()),
            dir,
            holder: Some(holder),
        };
        assert!(
            crate::eventually(10, || me.dir.join("mounted").exists()),
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
    /// (the containers' processes); zombies are not counted.
    pub fn processes(&self) -> Vec<u32> {
        let root = self.dir.join("root").to_string_lossy().into_owned();
        runtime::processes(|cmdline| {
            let text = String::from_utf8_lossy(cmdline);
            text.starts_with("/usr/bin/conmon") && text.contains(&root)
        })
    }

    /// Cgroup directories under this instance's cgroup parent, in every hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        runtime::cgroups(&self.cgroup_parent)
    }

    /// Removes every container of the instance (`rm --all --force`), then kills what is
    /// left of them.
    pub fn remove_containers(&self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        runtime::kill_until_gone(|| self.processes());
    }

    /// Everything [`Drop`] does; returns what is left behind (empty when nothing is).
    pub fn close(mut self) -> Vec<String> {
        self.tear_down()
    }

    fn tear_down(&mut self) -> Vec<String> {
        if self.holder.is_none() {
            return Vec::new();
        }
        self.remove_containers();
        let mut left: Vec<String> = self
            .processes()
            .iter()
            .map(|p| format!("process {p}"))
            .collect();
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        for cg in self.cgroups() {
            if fs::remove_dir(&cg).is_err() {
                left.push(format!("cgroup {}", cg.display()));
            }
        }
        // The mounts lived in the holder's mount namespace, gone with it: plain directories.
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            left.push(format!("{}: {e}", self.dir.display()));
        }
        left
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.tear_down();
    }
}
