//! Gantry's host agent: the process on every box that carries out the controller's commands.
//!
//! - [`appspec`]: CodeDeploy's `appspec.yml` (version 0.0, `os: linux`), parsed and checked with
//!   every problem located before anything runs.
//! - [`lifecycle`]: one deployment — CodeDeploy's in-place lifecycle events in order, with the
//!   previous revision's ApplicationStop, revisions in versioned directories per pipeline.
//! - [`install`]: the Install event — the cleanup list, `files` under `file_exists_behavior`,
//!   `permissions`.
//! - [`hooks`]: one script in its own process group, its timeout, `runas`, CodeDeploy's
//!   environment variables.
//! - [`health`]: the pipeline's HTTP health check (path, port, interval, timeout, thresholds).
//! - [`verify`]: the box's trust root and the supply chain's checks; [`deploy`]: verify, then
//!   stage, then run — one deployment command.
//! - [`agent`]: the loop — register, long-poll, [`agent::decide`] what each command means, carry
//!   it out, report the whole box — over the narrow [`controller::Controller`] trait, with its
//!   durable [`state`] (highest epoch, what runs, every command's outcome) written atomically;
//!   [`http`] is the controller over HTTP.
//!
//! Architecture invariant: no hook runs and no file is installed from a revision the agent has
//! not verified against its own trust root.

pub mod agent;
pub mod appspec;
pub mod controller;
pub mod deploy;
pub mod health;
pub mod hooks;
pub mod http;
pub mod install;
pub mod lifecycle;
pub mod state;
pub mod verify;

use std::io::Write;
use std::path::Path;

pub use gantry_model::Digest;

use crate::appspec::{LifecycleEvent, Problems};

/// Everything that can go wrong on a box, each saying what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message, so `{:#}` chains print it once.
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{0}")]
    AppSpec(#[from] Problems),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Package(String),
    /// The artifact failed verification; nothing of it was unpacked, installed or run.
    #[error("refused before anything ran: {0}")]
    Refused(String),
    #[error("Install: {0}")]
    Install(String),
    #[error("{event} failed: {reason}")]
    Lifecycle { event: LifecycleEvent, reason: String, report: Box<lifecycle::Report> },
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, cause: std::io::Error) -> Error {
        Error::Io { path: path.as_ref().display().to_string(), cause }
    }
}

/// Replaces a small state file so that a crash at any moment leaves the old content or the new:
/// write a temporary file, fsync it, rename it over the old one, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let parent = path.parent().expect("a state file lives in a directory");
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = path.file_name().expect("a state file has a name").to_string_lossy();
    let temporary = parent.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&temporary, e))?;
    file.sync_all().map_err(|e| Error::io(&temporary, e))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(|e| Error::io(path, e))?;
    std::fs::File::open(parent)
        .and_then(|directory| directory.sync_all())
        .map_err(|e| Error::io(parent, e))
}

/// [`write_atomically`] for a value as pretty JSON.
pub fn write_json_atomically<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("state serializes");
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}
