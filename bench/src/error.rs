//! The library's one error type: what stops a run or a comparison from starting or finishing.
//!
//! Failures on the wire during a run (refused connections, resets, timeouts, bad statuses) are not
//! errors of this kind: they are counted by kind in the run's tallies and reported.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why `run` or `compare` could not do its job.
#[derive(Debug)]
pub enum Error {
    /// An option, or a combination of options, that cannot run; the text names the option.
    Usage(String),
    /// A file or socket operation failed.
    Io {
        /// What we were doing, e.g. "writing bench/runs/x/summary.json".
        what: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A run folder given to `compare` lacks a file or holds one we cannot read.
    BadRun {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The stock probe (`GET /api/v1/available`) got an answer it cannot use.
    Probe(String),
}

impl Error {
    /// An [`Error::Io`] with its context, for `map_err`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(why) => write!(f, "{why}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::BadRun { path, why } => write!(f, "{}: {why}", path.display()),
            Error::Probe(why) => write!(f, "stock probe: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
