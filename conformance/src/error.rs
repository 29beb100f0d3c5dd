//! The harness's one error type: a message that says what was being done, plus its cause.

use std::fmt;

/// An error with the context it rose through, outermost first when displayed.
#[derive(Debug)]
pub struct Error {
    msg: String,
    missing_prerequisite: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error {
            msg: msg.into(),
            missing_prerequisite: false,
        }
    }

    /// Something the machine lacks (root, a package): a test that needs it fails, naming it.
    pub fn missing(msg: impl Into<String>) -> Self {
        Error {
            msg: msg.into(),
            missing_prerequisite: true,
        }
    }

    pub fn is_missing_prerequisite(&self) -> bool {
        self.missing_prerequisite
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// Adds "what we were doing" to any displayable error.
pub trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
    fn with_context<F: FnOnce() -> String>(self, what: F) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::new(format!("{what}: {e}")))
    }
    fn with_context<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|e| Error::new(format!("{}: {e}", what())))
    }
}
