//! Where things are: the workspace, its cargo target dir and the harness's cache inside it.

use std::path::{Path, PathBuf};

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target dir: `CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Where the workspace's release binaries (our plugins) are: beside this program (a test
/// binary sits one level lower, in `deps/`). Builds target the host tuple explicitly
/// (`.cargo/config.toml`), so that is `target/<host tuple>/release`.
pub fn release_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(mut dir) = exe.parent()
    {
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir = dir.parent().unwrap_or(dir);
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            return dir.to_path_buf();
        }
    }
    // Installed elsewhere: the first `target/*/release` that holds our plugin.
    std::fs::read_dir(target_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("release"))
        .find(|d| d.join("tombstone").is_file())
        .unwrap_or_else(|| target_dir().join("release"))
}

/// The harness's cache: initramfs, cnitool, plugin dir, job scripts.
pub fn cache_dir() -> PathBuf {
    target_dir().join("cni-conformance")
}

/// A temporary file name in `dir`, unique across processes and threads, for write-then-rename.
pub fn unique_tmp(dir: &Path, stem: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    dir.join(format!(
        ".{stem}-{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}
