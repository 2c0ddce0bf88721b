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

/// The one definition of what an artifact *contains*: its own commits and, through its
/// `previous` link (the supply chain's base: the artifact it was built after), everything
/// that one contains. Returns the artifacts whose commits `artifact` contains, itself first,
/// and the position of a link that never arrived (its commits are unknown: fail closed).
/// Links below `forgotten_below` were forgotten on purpose and end the walk.
pub fn contained<'a>(
    artifacts: &'a std::collections::BTreeMap<u64, Artifact>,
    forgotten_below: u64,
    artifact: &'a Artifact,
) -> (Vec<&'a Artifact>, Option<u64>) {
    let mut contained = vec![artifact];
    let mut link = artifact.previous;
    while let Some(position) = link {
        let newest = contained.last().expect("not empty").sequence;
        match artifacts.get(&position) {
            // Links only go back: a loop or a forward link ends the walk.
            Some(earlier) if position < newest => {
                contained.push(earlier);
                link = earlier.previous;
            }
            Some(_) => break,
            None if position < forgotten_below => break,
            None => return (contained, Some(position)),
        }
    }
    (contained, None)
}

/// Whether `artifact` contains commit `id` (see [`contained`]).
pub fn contains_commit(
    artifacts: &std::collections::BTreeMap<u64, Artifact>,
    forgotten_below: u64,
    artifact: &Artifact,
    id: &str,
) -> bool {
    let (contained, _) = contained(artifacts, forgotten_below, artifact);
    contained.iter().any(|known| known.commits.iter().any(|commit| commit.id == id))
}

/// Commits and package versions known to be bad; an artifact containing one may not start a
/// production deployment (a content blocker).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentBlocklist {
    pub commits: Vec<String>,
    pub packages: Vec<Package>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn artifact(sequence: u64, previous: Option<u64>) -> Artifact {
        Artifact {
            sequence,
            previous,
            digest: Digest::of(&sequence.to_le_bytes()),
            commits: vec![Commit {
                id: format!("c{sequence}"),
                author: "a".into(),
                approvers: vec!["b".into()],
            }],
            packages: Vec::new(),
            recalled: false,
            refused: false,
        }
    }

    /// Artifacts at `positions` (each built after the one before), `forgotten_below`, and for
    /// the newest: the commits it contains and the missing link, if any.
    fn check(
        positions: &[(u64, Option<u64>)],
        forgotten_below: u64,
        expected: (&[&str], Option<u64>),
    ) {
        let artifacts: BTreeMap<u64, Artifact> =
            positions.iter().map(|(s, p)| (*s, artifact(*s, *p))).collect();
        let newest = artifacts.values().next_back().unwrap();
        let (contained, missing) = contained(&artifacts, forgotten_below, newest);
        let commits: Vec<&str> =
            contained.iter().flat_map(|a| &a.commits).map(|c| c.id.as_str()).collect();
        assert_eq!((commits.as_slice(), missing), expected, "{positions:?}");
        for id in expected.0 {
            assert!(contains_commit(&artifacts, forgotten_below, newest, id));
        }
    }

    #[test]
    fn an_artifact_contains_every_earlier_build_it_was_built_after() {
        check(&[(1, None), (2, Some(1)), (3, Some(2))], 0, (&["c3", "c2", "c1"], None));
        // A build the engine never heard of: its commits are unknown.
        check(&[(1, None), (3, Some(2))], 0, (&["c3"], Some(2)));
        // Forgotten on purpose: the walk ends there.
        check(&[(3, Some(2))], 3, (&["c3"], None));
        // A link forward or to itself ends the walk.
        check(&[(1, Some(3)), (3, Some(3))], 0, (&["c3"], None));
    }
}
