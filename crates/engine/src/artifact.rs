//! Artifacts as the engine sees them: a digest, the commits and packages inside, review status.
//!
//! The engine never verifies a signature itself (no I/O); it accepts only artifacts whose
//! signature the supply chain reported verified, and nothing overrides that.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A content address, `sha256:<hex>`: the one digest type of every crate. Plans and commands
/// name artifacts only by digest.
pub use gantry_model::Digest;

/// One commit newly included in an artifact, with its review record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Commit {
    pub id: String,
    pub author: String,
    /// People who approved this exact revision.
    pub approvers: Vec<String>,
}

impl Commit {
    /// Reviewed means approved by someone other than its author.
    pub fn is_reviewed(&self) -> bool {
        self.approvers.iter().any(|approver| approver != &self.author)
    }
}

/// A dependency packaged into the artifact.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

impl fmt::Display for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// What the build and supply chain report about a new artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactReady {
    pub digest: Digest,
    /// The artifact's position on its pipeline's mainline (e.g. the depth of its newest commit):
    /// a later build has a larger number. Orders artifacts however late their messages arrive.
    pub sequence: u64,
    /// The position of the artifact this one was built after (`None` for a pipeline's first).
    /// The engine walks these links to learn every commit an artifact contains; a link to an
    /// artifact it never heard of blocks production (fail closed: those commits' reviews and
    /// content are unknown).
    pub previous: Option<u64>,
    /// Commits on the mainline since the pipeline's previous artifact. An artifact *contains*
    /// its own commits and those of every earlier artifact of its pipeline.
    pub commits: Vec<Commit>,
    pub packages: Vec<Package>,
    /// Whether the signature and provenance were verified against policy.
    pub signature_verified: bool,
}

/// An accepted artifact, numbered by its position on the pipeline's mainline.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Artifact {
    pub sequence: u64,
    pub previous: Option<u64>,
    pub digest: Digest,
    pub commits: Vec<Commit>,
    pub packages: Vec<Package>,
    /// Set by "roll back everywhere": this artifact never deploys forward again.
    pub recalled: bool,
    /// Its signature was not verified: it never deploys, but its commits are still part of
    /// every later artifact.
    pub refused: bool,
}

impl Artifact {
    /// Whether a stage may take this artifact.
    pub fn deployable(&self) -> bool {
        !self.recalled && !self.refused
    }
}

impl Artifact {
    pub fn unreviewed_commits(&self) -> impl Iterator<Item = &Commit> {
        self.commits.iter().filter(|commit| !commit.is_reviewed())
    }

    pub fn authors(&self) -> impl Iterator<Item = &str> {
        self.commits.iter().map(|commit| commit.author.as_str())
    }
}

/// Commits and package versions known to be bad; an artifact containing one may not start a
/// production deployment (a content blocker).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentBlocklist {
    pub commits: Vec<String>,
    pub packages: Vec<Package>,
}
