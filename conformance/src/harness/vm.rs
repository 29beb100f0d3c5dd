//! A throwaway qemu VM (software emulation) booting the distribution's kernel, which has
//! IPvlan, with the host's files visible: 9p mounts the host's `/` read-only, an overlay on a
//! tmpfs makes it writable, and the job runs in `chroot` to that view. Nothing the job does
//! reaches the host.
//!
//! The initramfs (busybox-static, the kernel modules the guest needs, an `/init`) is built once
//! per kernel version and cached in the cargo target dir. The job script is written to a file
//! under that dir too: the guest sees it at the same path, which goes on the kernel command
//! line (the command line cannot carry the job itself). `/init` prints the job's exit status
//! on a marker line, which is read back from the serial console.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::harness::cpio::Archive;
use crate::harness::paths;

/// Modules copied into the initramfs and loaded in this order: busybox `insmod` does not
/// resolve dependencies, so each module comes after those it needs.
pub const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
    "ipvlan",
    "dummy",
    "veth",
    "macvlan",
    "overlay",
];

/// The emulator binary looked up in `PATH`.
pub const QEMU: &str = "qemu-system-x86_64";

const BEGIN_MARKER: &str = "@@CNI-JOB-BEGIN@@";
const EXIT_MARKER: &str = "@@CNI-JOB-EXIT@@";
/// Bumped whenever the initramfs layout or `/init` changes, so a stale cache is rebuilt.
const INITRAMFS_FORMAT: u32 = 3;

/// A kernel image with its modules directory.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub version: String,
    pub image: PathBuf,
    pub modules: PathBuf,
}

impl Kernel {
    /// The newest `/boot/vmlinuz-<ver>` whose `/lib/modules/<ver>` has the IPvlan module.
    pub fn find() -> Result<Kernel> {
        Self::find_in(Path::new("/boot"), Path::new("/lib/modules"))
    }

    pub fn find_in(boot: &Path, modules_root: &Path) -> Result<Kernel> {
        let entries = fs::read_dir(boot).map_err(|e| {
            Error::missing(format!(
                "no kernel: cannot read {}: {e} (install linux-image-amd64: \
                 conformance/vm/install-deps.sh)",
                boot.display()
            ))
        })?;
        let mut found: Vec<Kernel> = Vec::new();
        let mut without_ipvlan = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix("vmlinuz-") else {
                continue;
            };
            let modules = modules_root.join(version);
            if find_module(&modules, "ipvlan").is_some() {
                found.push(Kernel {
                    version: version.to_string(),
                    image: entry.path(),
                    modules,
                });
            } else {
                without_ipvlan.push(version.to_string());
            }
        }
        found.sort_by_key(|k| version_key(&k.version));
        found.pop().ok_or_else(|| {
            Error::missing(format!(
                "no kernel with IPvlan: no {}/vmlinuz-<ver> with an ipvlan module under {}/<ver> \
                 (kernels without it: {:?}); install linux-image-amd64 \
                 (conformance/vm/install-deps.sh)",
                boot.display(),
                modules_root.display(),
                without_ipvlan
            ))
        })
    }
}

/// Orders "6.1.0-56-amd64" numerically by its number groups.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The path of `<name>.ko` (or a compressed variant) under a kernel's modules directory.
fn find_module(modules: &Path, name: &str) -> Option<PathBuf> {
    let wanted: Vec<String> = ["ko", "ko.xz", "ko.zst", "ko.gz"]
        .iter()
        .map(|ext| format!("{name}.{ext}"))
        .collect();
    let mut stack = vec![modules.join("kernel")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(entry.path());
            } else if wanted.iter().any(|w| entry.file_name().to_str() == Some(w)) {
                return Some(entry.path());
            }
        }
    }
    None
}

/// A module file's contents, decompressed when the distribution ships it compressed
/// (busybox `insmod` wants a plain ELF object).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        Some("xz")
    } else if name.ends_with(".ko.zst") {
        Some("zstd")
    } else if name.ends_with(".ko.gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => fs::read(path).with_context(|| format!("read module {}", path.display())),
        Some(tool) => {
            let out = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .with_context(|| format!("run {tool} to decompress {}", path.display()))?;
            if !out.status.success() {
                return Err(Error::new(format!(
                    "{tool} -dc {} failed: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            Ok(out.stdout)
        }
    }
}

/// Looks a program up in `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The static busybox the initramfs runs on.
fn find_busybox() -> Result<PathBuf> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| which("busybox"))
        .ok_or_else(|| {
            Error::missing(
                "busybox not found: install busybox-static (conformance/vm/install-deps.sh)",
            )
        })?;
    let bytes = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    // A dynamically linked busybox names its program interpreter; the initramfs has no libc.
    if bytes.windows(8).any(|w| w == b"/lib64/l") || bytes.windows(12).any(|w| w == b"/lib/ld-linu")
    {
        return Err(Error::missing(format!(
            "{} is dynamically linked: install busybox-static",
            path.display()
        )));
    }
    Ok(path)
}

/// The busybox applets `/init` uses before it chroots into the host view.
const APPLETS: &[&str] = &[
    "sh", "mount", "mkdir", "insmod", "chroot", "poweroff", "cat", "sed", "sleep", "echo",
];

fn init_script() -> String {
    let modules: Vec<String> = MODULES.iter().map(|m| format!("/modules/{m}.ko")).collect();
    // The dummy module would create a "dummy0" of its own; the jobs make the links they need.
    format!(
        r#"#!/bin/sh
# initramfs of the cni-conformance VM harness (format {INITRAMFS_FORMAT})
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do
    args=""
    [ "$m" = /modules/dummy.ko ] && args=numdummies=0
    insmod "$m" $args || echo "cni-conformance: insmod $m failed"
done
job=$(sed -n 's/.*cnijob=\([^ ]*\).*/\1/p' /proc/cmdline)
rc=125
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower &&
   mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir -p /rw/u /rw/w &&
   mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/u,workdir=/rw/w /host &&
   mount -t proc proc /host/proc && mount -t sysfs sys /host/sys &&
   mount -t devtmpfs dev /host/dev && mount -t tmpfs -o mode=0755 tmpfs /host/run; then
    echo "{BEGIN_MARKER}"
    chroot /host /bin/sh "$job" </dev/null 2>&1
    rc=$?
else
    echo "cni-conformance: mounting the host view failed"
fi
echo "{EXIT_MARKER} $rc"
poweroff -f
sleep 5
"#,
        modules = modules.join(" ")
    )
}

/// Builds (or reuses) the initramfs for `kernel` under the cache dir.
pub fn initramfs(kernel: &Kernel) -> Result<PathBuf> {
    let dir = paths::cache_dir();
    let path = dir.join(format!(
        "initramfs-{}-v{INITRAMFS_FORMAT}.cpio",
        kernel.version
    ));
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let busybox = find_busybox()?;
    let mut a = Archive::new();
    for d in [
        "/bin", "/dev", "/proc", "/sys", "/lower", "/rw", "/host", "/modules",
    ] {
        a.dir(d);
    }
    a.char_dev("/dev/console", 5, 1);
    a.char_dev("/dev/null", 1, 3);
    let bb = fs::read(&busybox).with_context(|| format!("read {}", busybox.display()))?;
    a.file("/bin/busybox", 0o755, &bb);
    for applet in APPLETS {
        a.symlink(&format!("/bin/{applet}"), "busybox");
    }
    for m in MODULES {
        let file = find_module(&kernel.modules, m).ok_or_else(|| {
            Error::missing(format!(
                "kernel {}: module {m} not found under {}",
                kernel.version,
                kernel.modules.display()
            ))
        })?;
        a.file(&format!("/modules/{m}.ko"), 0o644, &read_module(&file)?);
    }
    a.file("/init", 0o755, init_script().as_bytes());
    let tmp = paths::unique_tmp(&dir, "initramfs");
    fs::write(&tmp, a.finish()).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(path)
}

/// How a VM is booted.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The emulator: a name looked up in `PATH` or a path.
    pub qemu: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The whole boot, job included, is killed after this.
    pub timeout: Duration,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            qemu: PathBuf::from(QEMU),
            memory_mib: 1024,
            cpus: 2,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What a job left behind.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The job's exit status inside the guest.
    pub status: i32,
    /// The job's stdout and stderr (and any kernel message printed meanwhile), cleaned.
    pub output: String,
    /// The whole console, cleaned: boot messages included.
    pub console: String,
    /// Wall time of the boot, job included.
    pub elapsed: Duration,
}

/// A bootable VM: emulator, kernel and initramfs resolved.
#[derive(Debug, Clone)]
pub struct Vm {
    pub kernel: Kernel,
    pub initramfs: PathBuf,
    pub qemu: PathBuf,
    pub config: VmConfig,
}

impl Vm {
    /// Finds the emulator and the kernel, and builds the initramfs if needed.
    pub fn prepare(config: VmConfig) -> Result<Vm> {
        let qemu = if config.qemu.components().count() > 1 {
            config.qemu.is_file().then(|| config.qemu.clone())
        } else {
            which(&config.qemu.to_string_lossy())
        }
        .ok_or_else(|| {
            Error::missing(format!(
                "{} not found: install qemu-system-x86 (conformance/vm/install-deps.sh)",
                config.qemu.display()
            ))
        })?;
        let kernel = Kernel::find()?;
        let initramfs = initramfs(&kernel)?;
        Ok(Vm {
            kernel,
            initramfs,
            qemu,
            config,
        })
    }

    /// Boots the VM, runs `script` with `/bin/sh` inside the host view, and returns its output.
    /// An error means the harness failed (no boot, timeout, no exit marker), not the job.
    pub fn run_job(&self, name: &str, script: &str) -> Result<JobOutput> {
        let job = write_job(name, script)?;
        let _lock = boot_lock()?;
        let result = self.boot(&job);
        let _ = fs::remove_file(&job);
        result
    }

    fn boot(&self, job: &Path) -> Result<JobOutput> {
        let job_str = job.to_str().filter(|s| !s.contains(char::is_whitespace));
        let Some(job_str) = job_str else {
            return Err(Error::new(format!(
                "job path {} must be UTF-8 without whitespace (it goes on the kernel command line)",
                job.display()
            )));
        };
        let append = format!("console=ttyS0 quiet loglevel=4 panic=-1 cnijob={job_str}");
        let mut cmd = Command::new(&self.qemu);
        cmd.args([
            "-accel",
            "tcg",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
        ])
        .args(["-m", &self.config.memory_mib.to_string()])
        .args(["-smp", &self.config.cpus.to_string()])
        .args([
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
        ])
        .arg("-kernel")
        .arg(&self.kernel.image)
        .arg("-initrd")
        .arg(&self.initramfs)
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.qemu.display()))?;
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        let status = wait_bounded(&mut child, self.config.timeout, &stdout);
        let elapsed = start.elapsed();
        let console = clean_console(&String::from_utf8_lossy(&snapshot(&stdout)));
        let errors = String::from_utf8_lossy(&snapshot(&stderr)).into_owned();
        match status {
            Wait::TimedOut => {
                return Err(Error::new(format!(
                    "VM timed out after {:?} and was killed; last console lines:\n{}",
                    self.config.timeout,
                    tail(&console, 30)
                )));
            }
            Wait::Failed(e) => return Err(Error::new(format!("wait for qemu: {e}"))),
            Wait::Exited | Wait::MarkerSeen => {}
        }
        let (output, job_status) = parse_console(&console).ok_or_else(|| {
            Error::new(format!(
                "VM ended without the job's exit marker (qemu stderr: {}); last console lines:\n{}",
                errors.trim(),
                tail(&console, 30)
            ))
        })?;
        Ok(JobOutput {
            status: job_status,
            output,
            console,
            elapsed,
        })
    }
}

type Shared = Arc<Mutex<Vec<u8>>>;

fn collect(pipe: Option<impl Read + Send + 'static>) -> Shared {
    let buf: Shared = Arc::default();
    if let Some(mut pipe) = pipe {
        let b = Arc::clone(&buf);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut v) = b.lock() {
                    v.extend_from_slice(&chunk[..n]);
                }
            }
        });
    }
    buf
}

fn snapshot(buf: &Shared) -> Vec<u8> {
    buf.lock().map(|v| v.clone()).unwrap_or_default()
}

enum Wait {
    Exited,
    /// The exit marker came but qemu did not power off in time: killed, result still good.
    MarkerSeen,
    TimedOut,
    Failed(std::io::Error),
}

fn wait_bounded(child: &mut Child, timeout: Duration, console: &Shared) -> Wait {
    let deadline = Instant::now() + timeout;
    let mut marker_at: Option<Instant> = None;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => {
                // Let the reader threads drain the pipes.
                thread::sleep(Duration::from_millis(100));
                return Wait::Exited;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Wait::Failed(e);
            }
        }
        let now = Instant::now();
        if marker_at.is_none() && contains(&snapshot(console), EXIT_MARKER.as_bytes()) {
            marker_at = Some(now);
        }
        let power_off_overdue = marker_at.is_some_and(|t| now - t > Duration::from_secs(10));
        if now >= deadline || power_off_overdue {
            let _ = child.kill();
            let _ = child.wait();
            thread::sleep(Duration::from_millis(100));
            return if power_off_overdue {
                Wait::MarkerSeen
            } else {
                Wait::TimedOut
            };
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Drops carriage returns, terminal escape sequences and other control characters.
pub fn clean_console(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next();
                            break;
                        }
                    }
                }
                // charset selection and the like take one more character
                Some('(' | ')' | '#') => {
                    chars.next();
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The job's output and exit status from a cleaned console, if the exit marker is there.
pub fn parse_console(console: &str) -> Option<(String, i32)> {
    let mut output = String::new();
    let mut inside = false;
    for line in console.lines() {
        if let Some(pos) = line.find(EXIT_MARKER) {
            let status = line[pos + EXIT_MARKER.len()..].trim().parse().ok()?;
            return Some((output, status));
        }
        if line.trim() == BEGIN_MARKER {
            inside = true;
            continue;
        }
        if inside {
            output.push_str(line);
            output.push('\n');
        }
    }
    None
}

static JOB_SEQ: AtomicU32 = AtomicU32::new(0);

fn write_job(name: &str, script: &str) -> Result<PathBuf> {
    let dir = paths::cache_dir().join("jobs");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path = dir.join(format!(
        "{safe}-{}-{}.sh",
        std::process::id(),
        JOB_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&path, script).with_context(|| format!("write job {}", path.display()))?;
    Ok(path)
}

/// Serialises boots across test threads and processes: two emulated guests on a small
/// machine only slow each other down and skew timings.
fn boot_lock() -> Result<File> {
    let dir = paths::cache_dir();
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("vm.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("lock {}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_cleaning_drops_cr_and_escapes() {
        let raw = "\x1b[2J\x1b[01;01Hhello\r\n\x1b]0;title\x07wor\x1b(Bld\r\n";
        assert_eq!(clean_console(raw), "hello\nworld\n");
    }

    #[test]
    fn exit_marker_gives_status_and_output() {
        let console = format!(
            "boot noise\n{BEGIN_MARKER}\nline 1\nline 2\n{EXIT_MARKER} 3\nreboot: Power down\n"
        );
        let (out, status) = parse_console(&console).unwrap();
        assert_eq!(status, 3);
        assert_eq!(out, "line 1\nline 2\n");
        assert!(parse_console("no marker here\n").is_none());
    }

    #[test]
    fn kernel_versions_order_numerically() {
        assert!(version_key("6.10.0-1-amd64") > version_key("6.9.0-30-amd64"));
        assert!(version_key("6.1.0-56-amd64") > version_key("6.1.0-9-amd64"));
    }

    #[test]
    fn missing_kernel_is_a_clear_error() {
        let dir =
            std::env::temp_dir().join(format!("cni-conformance-nokernel-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let err = Kernel::find_in(&dir, &dir).unwrap_err().to_string();
        assert!(err.contains("no kernel with IPvlan"), "{err}");
        let err = Kernel::find_in(&dir.join("absent"), &dir)
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux-image-amd64"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_emulator_is_a_clear_error() {
        let config = VmConfig {
            qemu: PathBuf::from("/nonexistent/qemu-system-x86_64"),
            ..VmConfig::default()
        };
        let err = Vm::prepare(config).unwrap_err().to_string();
        assert!(err.contains("install qemu-system-x86"), "{err}");
    }

    #[test]
    fn init_loads_modules_in_order() {
        let init = init_script();
        let pos: Vec<usize> = MODULES
            .iter()
            .map(|m| init.find(&format!("/modules/{m}.ko")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
    }
}
