//! Delegation to another plugin (IPAM) found on `CNI_PATH`, as libcni's `invoke` does it: the
//! same environment with `CNI_COMMAND` replaced, the given config on stdin, the result or
//! the error object read from stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use crate::{CniError, Command, Env, Result, code};

/// A plugin type names a file in a `CNI_PATH` directory: no path separators, not `.`/`..`.
pub fn validate_type(t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= 255
        && t != "."
        && t != ".."
        && !t.contains('/')
        && !t.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::config(format!("invalid plugin type {t:?}")))
    }
}

/// The first executable file named `plugin_type` in the `CNI_PATH` directories.
pub fn find(env: &Env, plugin_type: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    validate_type(plugin_type)?;
    env.path
        .iter()
        .map(|dir| dir.join(plugin_type))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| {
            CniError::new(
                code::DELEGATE_FAILURE,
                format!("plugin {plugin_type:?} not found in CNI_PATH"),
            )
        })
}

/// Runs `plugin_type` with `command` and `stdin`. Returns the parsed stdout when it printed
/// something on success (ADD's result), `None` otherwise. A failure keeps the delegate's own
/// code when it is one of the spec's (below 100, e.g. 7 or 50), else becomes code 104; the
/// message names the delegate.
pub fn run(env: &Env, plugin_type: &str, command: Command, stdin: &[u8]) -> Result<Option<Value>> {
    let bin = find(env, plugin_type)?;
    let what = format!("{plugin_type} {}", command.as_str());
    let mut child = Process::new(&bin)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::new(code::DELEGATE_FAILURE, format!("cannot run {what}: {e}")))?;
    if let Some(mut pipe) = child.stdin.take() {
        // A delegate that exits without reading is reported by its status, not as EPIPE.
        let _ = pipe.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(code::DELEGATE_FAILURE, format!("wait for {what}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        if stdout.trim().is_empty() {
            return Ok(None);
        }
        return serde_json::from_str(&stdout).map(Some).map_err(|e| {
            CniError::new(code::DELEGATE_FAILURE, format!("{what}: unreadable result"))
                .with_details(format!("{e}: {}", stdout.trim()))
        });
    }
    Err(delegate_error(
        &what,
        &stdout,
        &String::from_utf8_lossy(&out.stderr),
        out.status.code(),
    ))
}

/// The error a failed delegate becomes, from its stdout (an error object) or its stderr.
pub fn delegate_error(what: &str, stdout: &str, stderr: &str, status: Option<i32>) -> CniError {
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(stdout)
        && let Some(c) = obj.get("code").and_then(Value::as_u64)
    {
        let msg = obj.get("msg").and_then(Value::as_str).unwrap_or("");
        let details = obj.get("details").and_then(Value::as_str).unwrap_or("");
        let own = if c < 100 {
            c as u32
        } else {
            code::DELEGATE_FAILURE
        };
        return CniError::new(own, format!("{what} failed: {msg} (code {c})"))
            .with_details(details);
    }
    let text = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    CniError::new(
        code::DELEGATE_FAILURE,
        format!(
            "{what} failed (exit {})",
            status.map_or("by signal".into(), |s| s.to_string())
        ),
    )
    .with_details(text.chars().take(2000).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_types_cannot_name_paths() {
        for ok in ["host-local", "tombstone-ipam", "a.b"] {
            assert!(validate_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "/bin/sh", "a b", "a\n"] {
            assert_eq!(validate_type(bad).unwrap_err().code, 7, "{bad:?}");
        }
    }

    #[test]
    fn delegate_errors_keep_spec_codes_and_name_the_delegate() {
        let e = delegate_error(
            "ipam ADD",
            r#"{"cniVersion":"1.1.0","code":103,"msg":"no address left","details":"10.0.0.0/30"}"#,
            "",
            Some(1),
        );
        assert_eq!(e.code, code::DELEGATE_FAILURE);
        assert!(
            e.msg.contains("no address left") && e.msg.contains("103"),
            "{}",
            e.msg
        );
        assert_eq!(e.details, "10.0.0.0/30");
        let e = delegate_error("ipam STATUS", r#"{"code":50,"msg":"full"}"#, "", Some(1));
        assert_eq!(e.code, 50);
        let e = delegate_error("ipam ADD", "", "panic: boom", Some(2));
        assert_eq!(e.code, code::DELEGATE_FAILURE);
        assert_eq!(e.details, "panic: boom");
    }
}
