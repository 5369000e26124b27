//! Errors with a type where callers branch on them. No side effects.
//!
//! - [`AttachError`]: the attach boundary's failures that a caller treats differently from the
//!   others (the daemon counts a container that went away as `skipped`, not `error`). Every
//!   other failure stays an `anyhow::Error` with its sentence.
//! - [`Errors`]: the failures of a teardown that goes on after one step failed (detach, gc,
//!   rollback), reported together as one sentence.
//!
//! Texts are printed with anyhow's `{:#}` (the error and its causes, joined by ": ").

use std::fmt;

/// An attach failure a caller branches on. Wrapped in `anyhow::Error`; find it with
/// `e.downcast_ref::<AttachError>()` (see [`AttachError::of`]).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Docker does not know the container (HTTP 404).
    #[error("no such container '{0}'; check the name with `docker ps -a`")]
    NoSuchContainer(String),
    /// The container stopped (or was removed) while it was being attached; `cause` is the step
    /// that failed because of it, and its text is the error's text.
    #[error("{cause:#}")]
    Exited {
        container: String,
        cause: anyhow::Error,
    },
}

impl AttachError {
    /// The typed failure inside `e`, if it is one.
    pub fn of(e: &anyhow::Error) -> Option<&AttachError> {
        e.downcast_ref::<AttachError>()
    }

    /// Whether the container is gone or stopped, so that not attaching it is no failure.
    pub fn container_went_away(e: &anyhow::Error) -> bool {
        matches!(
            Self::of(e),
            Some(AttachError::NoSuchContainer(_) | AttachError::Exited { .. })
        )
    }
}

/// The failures of a teardown that goes on past a failed step, in order.
#[derive(Debug, Default)]
pub struct Errors(Vec<String>);

impl Errors {
    pub fn new() -> Self {
        Errors(Vec::new())
    }

    /// Records one failure, as the sentence `what`.
    pub fn push(&mut self, what: impl Into<String>) {
        self.0.push(what.into());
    }

    /// Records the error of `r` (as `{:#}`, after `prefix` when it is not empty), if any.
    pub fn note<T>(&mut self, prefix: &str, r: anyhow::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) if prefix.is_empty() => {
                self.push(format!("{e:#}"));
                None
            }
            Err(e) => {
                self.push(format!("{prefix}: {e:#}"));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(())` when nothing failed, else one error: `context` (when not empty), then the
    /// failures joined by "; ".
    pub fn into_result(self, context: &str) -> anyhow::Result<()> {
        if self.is_empty() {
            Ok(())
        } else if context.is_empty() {
            Err(anyhow::anyhow!("{self}"))
        } else {
            Err(anyhow::anyhow!("{context}{self}"))
        }
    }
}

/// The failures joined by "; ".
impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_went_away_error_is_found_through_its_wrapping() {
        let e = anyhow::Error::new(AttachError::NoSuchContainer("web".into()));
        assert!(AttachError::container_went_away(&e));
        assert_eq!(
            format!("{e:#}"),
            "no such container 'web'; check the name with `docker ps -a`"
        );
        let cause = anyhow::anyhow!("gone").context("cannot open its namespace");
        let e = anyhow::Error::new(AttachError::Exited {
            container: "web".into(),
            cause,
        });
        assert!(AttachError::container_went_away(&e));
        // The text is the cause's, once.
        assert_eq!(format!("{e:#}"), "cannot open its namespace: gone");
        assert!(!AttachError::container_went_away(&anyhow::anyhow!("boom")));
    }

    #[test]
    fn errors_join_in_order() {
        let mut errs = Errors::new();
        assert!(errs.note::<()>("", Ok(())).is_some());
        assert!(errs.into_result("ctx: ").is_ok());
        let mut errs = Errors::new();
        errs.note::<()>("", Err(anyhow::anyhow!("a")));
        errs.note::<()>("veth x", Err(anyhow::anyhow!("b").context("c")));
        errs.push("d");
        assert_eq!(errs.len(), 3);
        let e = errs
            .into_result("gc could not remove everything: ")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "gc could not remove everything: a; veth x: c: b; d"
        );
    }
}
