//! Gantry's supply chain: everything between a commit on the mainline and a signed, immutable
//! artifact that hosts may run.
//!
//! # The use cases: [`operations`] on a [`home::Home`]
//!
//! The CLI and the controller call the same functions; neither assembles the pieces below
//! itself.
//!
//! - [`home::Home`]: one Gantry home directory (store, keys, keyring, reviews, blocks, poller
//!   state, mirrors), its root made absolute, and the rule that once it has a trust root only
//!   the keyring that root signed counts.
//! - [`operations::poll_and_build`]: the controller's build loop, one call per poll: looks at a
//!   pipeline's source, builds a new mainline head as the trusted build service
//!   ([`build::BuilderRole::Service`]), signs it, checks reviews and content blockers, and returns
//!   the stored artifact with its verdict ([`operations::Checked`]). Safe to call again: the
//!   head is remembered before building, the store never overwrites.
//! - [`operations::build_and_check`]: the same for one commit (`gantry build`, as
//!   [`build::BuilderRole::Local`]).
//! - [`operations::Verification`]: everything one verification needs, read from a home with a
//!   [`operations::Trust`] and a [`verify::Policy`]; `check` and `check_stored` return the
//!   verified statement or the failing check.
//! - [`operations::affected_by_block`] and [`operations::artifact_blockers`]: what a block
//!   reaches, and what keeps an artifact from deploying; [`operations::publish_blocks`]: the
//!   signed block list hosts read, with every affected artifact and a maximum age.
//! - [`operations::approve`] and [`operations::receive_webhook`]: approvals by a reviewer's
//!   key or a verified forge delivery (which also authenticates the pull request's author).
//!
//! # The parts
//!
//! - [`source`]: git repositories (local paths and URLs) on their mainline branch, commits with
//!   their authors, the commits between two commits, a poller; [`webhook`] authenticates GitHub-
//!   and GitLab-style push and approval payloads and turns them into the same records.
//! - [`review`]: the team keyring and approvals signed by a reviewer's key (or imported from a
//!   verified forge webhook), each for one exact commit (or its identical tree); self-approval
//!   is refused.
//! - [`build`]: the commit range (computed from the pipeline's base, never given), a clean
//!   export of the exact commit, the build command in a [`sandbox::Sandbox`] (bubblewrap with
//!   an allow-list filesystem, else the weaker unshare) without network, capabilities or a view
//!   of the keys, with a cleared and recorded environment, a time limit that kills the whole
//!   process tree, and captured logs; the builder id earned from the isolation achieved;
//!   [`lockfiles`] lists the dependencies the source pins, [`version`] compares their versions.
//! - [`artifact`]: the deterministic tar+zstd package and its [`artifact::Manifest`]; [`store`]
//!   keeps both in a content-addressed directory that refuses overwrites and verifies on read.
//! - [`attestation`]: the in-toto Statement v1 with a SLSA Provenance v1 predicate, in a [`dsse`]
//!   envelope signed by a build key from [`keys`] (generate, rotate, revoke).
//! - [`verify`]: signature, signer, digest and policy checks (builder, source, range base,
//!   reviews, blocks), each failure naming its check.
//! - [`blocks`]: content blocks by commit or package version range, org-wide or per pipeline,
//!   with an audit trail, and every blocker an artifact carries (unreviewed commits included).
//!
//! Architecture invariant: nothing here decides when to deploy; this crate answers "may this
//! artifact run, and why not" and leaves the deciding to `gantry-engine`.
//!
//! Architecture invariant: a verifier reads a statement only from the bytes whose signature it
//! checked, never from the envelope a second time.
//!
//! Architecture invariant: an artifact's commit list is computed from its pipeline's base (the
//! newest deployable artifact built from an ancestor, or a configured trusted base); no caller
//! can narrow it, and a verifier accepts it only on a base it verified or trusts.

pub mod artifact;
pub mod attestation;
pub mod blocks;
pub mod build;
pub mod dsse;
pub mod home;
pub mod keys;
pub mod lockfiles;
pub mod operations;
pub mod published_blocks;
pub mod review;
pub mod sandbox;
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
