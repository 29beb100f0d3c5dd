//! The installer's one error type: a [`Kind`] (which decides the exit code), the cause, the
//! context it gathers as it rises (which step, which file) and every detail, printed as
//! `context: context: cause` with one detail a line below. [`collect`] merges a teardown's failures.

use std::fmt;

use tombstone_cni::CniError;

/// What went wrong, broadly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The command line is wrong (exit code 2; every other kind is 1).
    Usage,
    /// A network configuration file is malformed or cannot be edited as asked.
    Config,
    /// A binary to install fails its VERSION check.
    Binary,
    /// The node is not as the run needs it: a symbolic link or a file in the way, a network
    /// that is not there.
    Refused,
    /// Reading or writing a file failed.
    Io,
    /// The installer's own state (manifest, backups) is unusable.
    State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallError {
    kind: Kind,
    cause: String,
    /// Innermost first: each `context` call, as the error rises, pushes the next one out.
    context: Vec<String>,
    details: Vec<String>,
}

pub type Result<T, E = InstallError> = std::result::Result<T, E>;

impl InstallError {
    pub fn new(kind: Kind, cause: impl Into<String>) -> Self {
        InstallError {
            kind,
            cause: cause.into(),
            context: Vec::new(),
            details: Vec::new(),
        }
    }

    pub fn usage(cause: impl Into<String>) -> Self {
        Self::new(Kind::Usage, cause)
    }
    pub fn config(cause: impl Into<String>) -> Self {
        Self::new(Kind::Config, cause)
    }
    pub fn refused(cause: impl Into<String>) -> Self {
        Self::new(Kind::Refused, cause)
    }
    pub fn state(cause: impl Into<String>) -> Self {
        Self::new(Kind::State, cause)
    }

    /// Says where the error happened, outside what it already says: `what: ...`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.context.push(what.to_string());
        self
    }

    /// Adds a line of details (a hint, a note, one of several failures).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.details.push(detail.into());
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn cause(&self) -> &str {
        &self.cause
    }

    pub fn details(&self) -> &[String] {
        &self.details
    }

    /// The first line: `context: context: cause`, outermost context first.
    pub fn headline(&self) -> String {
        let mut parts: Vec<&str> = self.context.iter().rev().map(String::as_str).collect();
        parts.push(&self.cause);
        parts.join(": ")
    }

    /// The process exit code for this error: 2 for a usage error, else 1 (3 is a run that
    /// did not fail but left a network not ready: see `run::Outcome`).
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Usage => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.headline())?;
        for d in &self.details {
            // A detail that is itself a multi-line error stays indented under its own line.
            write!(f, "\n  {}", d.replace('\n', "\n  "))?;
        }
        Ok(())
    }
}

impl std::error::Error for InstallError {}

/// An error of the CNI layer (the state directory): its message is the cause and its
/// details are kept.
impl From<CniError> for InstallError {
    fn from(e: CniError) -> Self {
        let mut out = InstallError::state(e.msg);
        if !e.details.is_empty() {
            out.details.push(e.details);
        }
        out
    }
}

/// `.context(what)` on a result: an installer error gets `what` in front; an I/O error becomes
/// a [`Kind::Io`] error saying what was being done; a CNI error is converted, details kept.
pub trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for Result<T, InstallError> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(what))
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| InstallError::new(Kind::Io, e.to_string()).context(what))
    }
}

impl<T> Context<T> for Result<T, CniError> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| InstallError::from(e).context(what))
    }
}

/// Every failure of an operation that does not stop at the first one (a teardown) as one
/// error: `Ok` when there was none, the failure itself when there was one, else an error of
/// the first one's kind, `what: N failures`, with every failure, details and all, in its
/// details.
pub fn collect(what: impl fmt::Display, failures: Vec<InstallError>) -> Result<()> {
    let mut failures = failures.into_iter();
    let Some(first) = failures.next() else {
        return Ok(());
    };
    let rest: Vec<InstallError> = failures.collect();
    if rest.is_empty() {
        return Err(first);
    }
    let n = rest.len() + 1;
    let mut out = InstallError::new(first.kind, format!("{n} failures")).context(what);
    for e in std::iter::once(&first).chain(&rest) {
        out.details.push(e.to_string());
    }
    Err(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_reads_outermost_first() {
        let e = InstallError::config("invalid JSON")
            .context("malformed network configuration")
            .context("/etc/cni/net.d/10-pods.conflist");
        assert_eq!(
            e.to_string(),
            "/etc/cni/net.d/10-pods.conflist: malformed network configuration: invalid JSON"
        );
        assert_eq!(e.kind(), Kind::Config);
        assert_eq!(e.cause(), "invalid JSON");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(InstallError::usage("unknown option").exit_code(), 2);
    }

    #[test]
    fn details_follow_one_a_line() {
        let e = InstallError::refused("is a symbolic link")
            .context("/x")
            .detail("edit its target")
            .detail("nothing was changed");
        assert_eq!(
            e.to_string(),
            "/x: is a symbolic link\n  edit its target\n  nothing was changed"
        );
    }

    #[test]
    fn io_and_cni_errors_keep_everything() {
        let r: std::io::Result<()> = Err(std::io::Error::from_raw_os_error(13));
        let e = r.context("cannot read /x").unwrap_err();
        assert_eq!(e.kind(), Kind::Io);
        assert!(e.to_string().starts_with("cannot read /x: "), "{e}");

        let cni = CniError::state("ledger is damaged").with_details("line 3: not JSON");
        let r: std::result::Result<(), CniError> = Err(cni);
        let e = r.context("installer state").unwrap_err();
        assert_eq!(e.kind(), Kind::State);
        assert_eq!(e.cause(), "ledger is damaged");
        assert_eq!(e.details(), ["line 3: not JSON"]);
        assert_eq!(
            e.to_string(),
            "installer state: ledger is damaged\n  line 3: not JSON"
        );
    }

    #[test]
    fn collect_reports_every_teardown_failure() {
        assert_eq!(collect("uninstall", vec![]), Ok(()));
        let one = InstallError::new(Kind::Io, "denied").context("/a");
        assert_eq!(collect("uninstall", vec![one.clone()]), Err(one.clone()));

        let two = InstallError::new(Kind::Io, "busy")
            .context("/b")
            .detail("try again");
        let three = InstallError::state("damaged").context("manifest");
        let e = collect("uninstall", vec![one, two, three]).unwrap_err();
        assert_eq!(e.kind(), Kind::Io);
        assert_eq!(e.headline(), "uninstall: 3 failures");
        assert_eq!(
            e.details(),
            ["/a: denied", "/b: busy\n  try again", "manifest: damaged"]
        );
        assert_eq!(
            e.to_string(),
            "uninstall: 3 failures\n  /a: denied\n  /b: busy\n    try again\n  manifest: damaged"
        );
    }
}
