//! ADD as a transaction: every step that changes the node pushes how to undo it; when a later
//! step fails, the steps are undone newest first and every undo that fails too is reported in
//! the error's `details`; when all steps succeed, nothing is undone.

use tombstone_cni::{CniError, Result};

type Step<'a> = Box<dyn FnOnce() -> Result<()> + 'a>;

/// The undo steps of a transaction so far.
#[derive(Default)]
pub struct Undo<'a> {
    steps: Vec<(String, Step<'a>)>,
}

impl<'a> Undo<'a> {
    /// Records how to undo what was just done (or is about to be: an undo must be harmless
    /// when its step did nothing).
    pub fn push(&mut self, what: impl Into<String>, step: impl FnOnce() -> Result<()> + 'a) {
        self.steps.push((what.into(), Box::new(step)));
    }

    /// Undoes every step, newest first, and returns `cause` with every failed undo appended
    /// to its details.
    fn unwind(self, cause: CniError) -> CniError {
        let mut failed = Vec::new();
        for (what, step) in self.steps.into_iter().rev() {
            if let Err(e) = step() {
                log::error!("undoing a failed ADD: {what} failed: {e}");
                failed.push(format!("undo {what}: {e}"));
            }
        }
        if failed.is_empty() {
            return cause;
        }
        let details = std::iter::once(cause.details.clone())
            .filter(|d| !d.is_empty())
            .chain(failed)
            .collect::<Vec<_>>()
            .join("; ");
        cause.with_details(details)
    }
}

/// Runs `body` as a transaction: its error unwinds the steps it pushed, newest first.
pub fn transaction<'a, T>(body: impl FnOnce(&mut Undo<'a>) -> Result<T>) -> Result<T> {
    let mut undo = Undo::default();
    match body(&mut undo) {
        Ok(v) => Ok(v),
        Err(e) => Err(undo.unwind(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn a_failure_undoes_newest_first_and_reports_failed_undos() {
        let log = RefCell::new(Vec::new());
        let r: Result<()> = transaction(|tx| {
            tx.push("link", || {
                log.borrow_mut().push("link");
                Ok(())
            });
            tx.push("ipam", || {
                log.borrow_mut().push("ipam");
                Err(CniError::new(104, "ipam DEL refused"))
            });
            Err(CniError::netlink("route failed"))
        });
        let e = r.unwrap_err();
        assert_eq!(*log.borrow(), ["ipam", "link"]);
        assert_eq!(e.code, 100);
        assert_eq!(e.msg, "route failed");
        assert_eq!(e.details, "undo ipam: ipam DEL refused (code 104)");
    }

    #[test]
    fn success_undoes_nothing() {
        let log = RefCell::new(Vec::new());
        let r = transaction(|tx| {
            tx.push("link", || {
                log.borrow_mut().push("link");
                Ok(())
            });
            Ok(7)
        });
        assert_eq!(r, Ok(7));
        assert!(log.borrow().is_empty());
    }
}
