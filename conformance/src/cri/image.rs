//! The pod sandbox ("pause") image, built offline: our static `cni-pause` binary as the one
//! file of one uncompressed layer, written as an OCI image layout (`oci-layout`,
//! `index.json`, the manifest, config and layer blobs) in a tar archive, which
//! `ctr images import` takes. Digests by `sha256sum`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The image's name, as the containerd config's `sandbox_image` names it.
pub const PAUSE_IMAGE: &str = "localhost/cni-pause:1";

/// A tar archive being written (ustar, regular files and directories, root-owned, mtime 0).
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn header(&mut self, name: &str, mode: u32, size: usize, kind: u8) {
        assert!(name.len() < 100, "tar name too long: {name}");
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0width$o}", width = len - 1);
            h[at..at + len - 1].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, mode as u64);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, size as u64);
        octal(&mut h, 136, 12, 0);
        h[148..156].copy_from_slice(b"        ");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.0.extend_from_slice(&h);
    }

    fn dir(&mut self, name: &str) {
        self.header(name, 0o755, 0, b'5');
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.header(name, mode, data.len(), b'0');
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sha256sum (coreutils)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(data)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    let hex = String::from_utf8_lossy(&out.stdout);
    format!(
        "sha256:{}",
        hex.split_whitespace().next().unwrap_or_default()
    )
}

/// The OCI architecture name of this machine.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes the pause image, whose entrypoint is `pause` (a static binary), to `out`.
pub fn write_pause_image(pause: &Path, out: &Path) {
    let bin = fs::read(pause).unwrap_or_else(|e| panic!("read {}: {e}", pause.display()));
    let mut layer = Tar::default();
    for d in ["dev/", "proc/", "sys/", "etc/", "tmp/"] {
        layer.dir(d);
    }
    layer.file("pause", 0o755, &bin);
    let layer = layer.finish();
    let layer_digest = sha256(&layer);

    let config = serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": { "Entrypoint": ["/pause"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256(&config);

    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": layer_digest, "size": layer.len() }],
    })
    .to_string()
    .into_bytes();
    let manifest_digest = sha256(&manifest);

    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "platform": { "architecture": oci_arch(), "os": "linux" },
            "annotations": { "io.containerd.image.name": PAUSE_IMAGE,
                             "org.opencontainers.image.ref.name": "1" },
        }],
    })
    .to_string()
    .into_bytes();

    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut archive = Tar::default();
    archive.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    archive.file("index.json", 0o644, &index);
    archive.dir("blobs/");
    archive.dir("blobs/sha256/");
    archive.file(&blob(&layer_digest), 0o644, &layer);
    archive.file(&blob(&config_digest), 0o644, &config);
    archive.file(&blob(&manifest_digest), 0o644, &manifest);
    fs::write(out, archive.finish()).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}

/// The pause image's archive in a fresh temporary file, removed when dropped (even when the
/// test fails).
pub struct PauseImage(pub PathBuf);

impl PauseImage {
    /// Writes the image of `pause` (our static `cni-pause`) to a file named by `tag`.
    pub fn write(pause: &Path, tag: &str) -> PauseImage {
        let out =
            std::env::temp_dir().join(format!("cni-cri-{}-{tag}.oci.tar", std::process::id()));
        let file = PauseImage(out);
        write_pause_image(pause, &file.0);
        file
    }
}

impl Drop for PauseImage {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
