//! Gantry's supply chain: everything between a commit on the mainline and a signed, immutable
//! artifact that hosts may run.
//!
//! - [`source`]: git repositories (local paths and URLs) on their mainline branch, commits with
//!   their authors, the commits since the last artifact, a poller; [`webhook`] authenticates
//!   GitHub- and GitLab-style push and approval payloads and turns them into the same records.
//! - [`review`]: the team keyring and approvals signed by a reviewer's key (or imported from a
//!   verified forge webhook), each for one exact commit (or its identical tree); self-approval
//!   is refused.
//! - [`build`]: a clean export of the exact commit, the build command in a [`build::Sandbox`]
//!   (bubblewrap, else unshare) without network, with a cleared environment, a time limit that
//!   kills the whole process tree, the build keys hidden, and captured logs; [`lockfiles`] lists
//!   the dependencies the source pins, [`version`] compares their versions.
//! - [`artifact`]: the deterministic tar+zstd package and its [`artifact::Manifest`]; [`store`]
//!   keeps both in a content-addressed directory that refuses overwrites and verifies on read.
//! - [`attestation`]: the in-toto Statement v1 with a SLSA Provenance v1 predicate, in a [`dsse`]
//!   envelope signed by a build key from [`keys`] (generate, rotate, revoke).
//! - [`verify`]: signature, signer, digest and policy checks, each failure naming its check.
//! - [`blocks`]: content blocks by commit or package version range, org-wide or per pipeline,
//!   with an audit trail, and every blocker an artifact carries (unreviewed commits included).
//!
//! Architecture invariant: nothing here decides when to deploy; this crate answers "may this
//! artifact run, and why not" and leaves the deciding to `gantry-engine`.
//!
//! Architecture invariant: a verifier reads a statement only from the bytes whose signature it
//! checked, never from the envelope a second time.

pub mod artifact;
pub mod attestation;
pub mod blocks;
pub mod build;
pub mod dsse;
pub mod keys;
pub mod lockfiles;
pub mod review;
pub mod source;
pub mod store;
pub mod verify;
pub mod version;
pub mod webhook;

use std::path::Path;

pub use gantry_model::{Digest, DigestError};

/// Everything that can go wrong in the supply chain, each saying what, where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message rather than a `source`, so `{:#}` chains print it
    /// once.
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("`git {args}` failed in {place}: {stderr}")]
    Git { args: String, place: String, stderr: String },
    #[error("{0}")]
    Source(String),
    #[error("build failed: {failure}\nthe whole log: {log}")]
    Build { failure: build::BuildFailure, log: String },
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Review(String),
    #[error("{0}")]
    Block(String),
    #[error("{0}")]
    Webhook(String),
    #[error(
        "artifact {digest} is already in the store; artifacts are immutable and never written twice \
         (this build reproduced it byte for byte: use the stored one)"
    )]
    AlreadyStored { digest: Digest },
    #[error("no artifact {digest} in the store at {store}; list them with `gantry artifact list`")]
    NotFound { digest: String, store: String },
    #[error(
        "{path} is corrupt: it should hash to {expected} but hashes to {actual}; \
         delete it and rebuild or restore it from a replica"
    )]
    Corrupt { path: String, expected: Digest, actual: Digest },
    #[error("verification failed: {0}")]
    Verify(verify::Failure),
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io { path: path.as_ref().display().to_string(), cause: source }
    }

    pub(crate) fn invalid(path: impl AsRef<Path>, reason: impl Into<String>) -> Error {
        Error::Invalid { path: path.as_ref().display().to_string(), reason: reason.into() }
    }
}
