//! The kernel layer's one error type: which operation failed, and why (the kernel's errno,
//! a socket failure, a dump that kept being interrupted, a reply we could not read, or a
//! request we refused to build). Plugins map it to CNI codes in one place of their own.

use std::fmt;

/// Why a kernel operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The kernel refused the request (NLMSG_ERROR, or a dump's NLMSG_DONE with an error).
    Errno(i32),
    /// A system call on the socket or a namespace file failed (errno, and its text).
    Io(i32, String),
    /// A dump was interrupted by concurrent changes (`NLM_F_DUMP_INTR`) on every try.
    Interrupted(usize),
    /// The kernel's reply could not be read (short, truncated, or an ack was missing).
    Malformed(String),
    /// The request itself is invalid (e.g. an IPv6 gateway on an IPv4 route).
    Invalid(String),
}

/// A failed kernel operation: `op` says what was being done, in the caller's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    pub op: String,
    pub cause: Cause,
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

impl KernelError {
    pub fn new(op: impl Into<String>, cause: Cause) -> KernelError {
        KernelError {
            op: op.into(),
            cause,
        }
    }

    /// The errno of a kernel refusal or a failed system call, if that is what happened.
    pub fn errno(&self) -> Option<i32> {
        match self.cause {
            Cause::Errno(e) | Cause::Io(e, _) => Some(e),
            _ => None,
        }
    }

    /// Whether the request was refused as invalid before reaching the kernel.
    pub fn is_invalid_request(&self) -> bool {
        matches!(self.cause, Cause::Invalid(_))
    }
}

impl Cause {
    pub(crate) fn io(e: &std::io::Error) -> Cause {
        Cause::Io(e.raw_os_error().unwrap_or(libc::EIO), e.to_string())
    }

    pub(crate) fn on(self, op: impl Into<String>) -> KernelError {
        KernelError::new(op, self)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Errno(e) => write!(f, "{} (errno {e})", std::io::Error::from_raw_os_error(*e)),
            Cause::Io(_, text) => f.write_str(text),
            Cause::Interrupted(n) => write!(
                f,
                "dump interrupted by concurrent changes {n} times in a row"
            ),
            Cause::Malformed(why) => write!(f, "unreadable netlink reply: {why}"),
            Cause::Invalid(why) => f.write_str(why),
        }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.cause)
    }
}

impl std::error::Error for KernelError {}
