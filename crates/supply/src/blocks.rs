//! Content blockers: known-bad commits and package versions, and every reason an artifact may
//! not start a deployment.
//!
//! A [`ContentBlock`] names a commit (full id or a prefix of at least 7 digits) or a package and
//! a version range, with a reason, for the whole organisation or a chosen set of pipelines. The
//! [`BlockList`] is one JSON file holding the blocks in force and an append-only audit trail of
//! every block added and lifted, by whom and why; updates take a file lock. [`blockers`] lists
//! everything that keeps one artifact from deploying in one pipeline: content blocks (a blocked
//! commit also blocks every later artifact built on it) and unreviewed commits, each saying why
//! and how it clears. [`flag_running`] finds the stages already running a blocked artifact, for
//! the engine's roll-back-everywhere; [`BlockList::concrete`] expands blocks into the exact
//! commits and package versions present, for consumers that match only exact values.

use std::fmt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::artifact::Manifest;
use crate::lockfiles::{Dependency, Ecosystem};
use crate::review::ReviewBook;
use crate::store::{StoredArtifact, earlier_commits};
use crate::version::VersionRange;
use crate::{Digest, Error};

/// The shortest commit prefix a block may name: shorter prefixes collide across repositories.
pub const MIN_COMMIT_PREFIX: usize = 7;
/// The most blocks in force at once; each is checked against every artifact of every pipeline.
pub const MAX_BLOCKS: usize = 10_000;

/// What a block matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BlockTarget {
    /// A commit, by full id or prefix.
    Commit { commit: String },
    /// A package whose version is in a range; any ecosystem when none is named.
    Package {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ecosystem: Option<Ecosystem>,
        name: String,
        versions: VersionRange,
    },
}

impl fmt::Display for BlockTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockTarget::Commit { commit } => write!(f, "commit {commit}"),
            BlockTarget::Package { ecosystem: Some(ecosystem), name, versions } => {
                write!(f, "{ecosystem} package {name} {versions}")
            }
            BlockTarget::Package { ecosystem: None, name, versions } => {
                write!(f, "package {name} {versions}")
            }
        }
    }
}

impl BlockTarget {
    /// The dependencies of `manifest` a package block matches: same ecosystem (or any), same
    /// name as the registry compares names, a version in the range, or no pinned version at all
    /// (fail closed). Nothing for a commit block.
    pub fn matching_dependencies<'m>(
        &self,
        manifest: &'m Manifest,
    ) -> impl Iterator<Item = &'m Dependency> {
        let package = match self {
            BlockTarget::Package { ecosystem, name, versions } => {
                Some((*ecosystem, name.clone(), versions.clone()))
            }
            BlockTarget::Commit { .. } => None,
        };
        manifest.dependencies.iter().filter(move |d| {
            package.as_ref().is_some_and(|(ecosystem, name, versions)| {
                ecosystem.is_none_or(|e| e == d.ecosystem)
                    && d.ecosystem.normalize_name(&d.name) == d.ecosystem.normalize_name(name)
                    && d.version.as_deref().is_none_or(|version| versions.contains(version))
            })
        })
    }
}

/// Where a block applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockScope {
    /// Every pipeline of the organisation.
    Organisation,
    /// These pipelines, by name.
    Pipelines(Vec<String>),
}

impl BlockScope {
    pub fn covers(&self, pipeline: &str) -> bool {
        match self {
            BlockScope::Organisation => true,
            BlockScope::Pipelines(pipelines) => pipelines.iter().any(|p| p == pipeline),
        }
    }
}

impl fmt::Display for BlockScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockScope::Organisation => f.write_str("organisation"),
            BlockScope::Pipelines(pipelines) => write!(f, "pipelines {}", pipelines.join(", ")),
        }
    }
}

/// One block in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentBlock {
    pub id: String,
    pub target: BlockTarget,
    pub scope: BlockScope,
    pub reason: String,
    pub added_by: String,
    pub added_at: Timestamp,
}

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum AuditEntry {
    Added { block: ContentBlock },
    Lifted { id: String, target: String, by: String, reason: String, at: Timestamp },
}

/// A stored artifact a block affects, named in a published block list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedArtifact {
    pub digest: Digest,
    pub block_ids: Vec<String>,
}

/// The blocks in force and their history, kept in one file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockList {
    pub blocks: Vec<ContentBlock>,
    pub audit: Vec<AuditEntry>,
    /// Artifacts the blocks affect, by digest, as a published list names them (see
    /// [`crate::published_blocks`]): a host without the builder's store still sees an artifact
    /// built on a blocked commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<AffectedArtifact>,
    next_id: u64,
    #[serde(skip)]
    path: Option<PathBuf>,
}

impl BlockList {
    /// A list read from elsewhere (a published list): checked against, never saved.
    pub fn read_only(blocks: Vec<ContentBlock>, affected: Vec<AffectedArtifact>) -> BlockList {
        BlockList { blocks, affected, ..BlockList::default() }
    }

    /// Loads the list at `path`; an absent file is an empty list.
    pub fn open(path: &Path) -> Result<BlockList, Error> {
        let mut list = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str::<BlockList>(&text)
                .map_err(|error| Error::invalid(path, format!("not a block list: {error}")))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BlockList::default(),
            Err(source) => return Err(Error::io(path, source)),
        };
        list.path = Some(path.to_path_buf());
        Ok(list)
    }

    /// Applies `change` to the newest list on disk under the file's lock, then saves it: two
    /// people adding blocks at once both get theirs, with distinct ids.
    fn update<T>(
        &mut self,
        change: impl FnOnce(&mut BlockList) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let Some(path) = self.path.clone() else { return change(self) };
        crate::store::with_lock(&path, || {
            *self = BlockList::open(&path)?;
            let result = change(self)?;
            let text = serde_json::to_string_pretty(self).expect("block list serializes");
            crate::store::write_atomically(&path, text.as_bytes())?;
            Ok(result)
        })
    }

    /// Adds a block; audited. Returns it with its id.
    pub fn add(
        &mut self,
        target: BlockTarget,
        scope: BlockScope,
        reason: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<ContentBlock, Error> {
        if reason.trim().is_empty() || by.trim().is_empty() {
            return Err(Error::Block(
                "a block needs a reason and who adds it (--reason, --by)".into(),
            ));
        }
        if let BlockTarget::Commit { commit } = &target {
            let hex = commit.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if commit.len() < MIN_COMMIT_PREFIX || commit.len() > 64 || !hex {
                return Err(Error::Block(format!(
                    "{commit:?} is not a commit id: give at least {MIN_COMMIT_PREFIX} lowercase hex digits"
                )));
            }
        }
        if let BlockScope::Pipelines(pipelines) = &scope
            && pipelines.is_empty()
        {
            return Err(Error::Block("a block scoped to pipelines must name at least one".into()));
        }
        self.update(|list| {
            if list.blocks.len() >= MAX_BLOCKS {
                return Err(Error::Block(format!(
                    "{MAX_BLOCKS} blocks are in force; lift old ones first"
                )));
            }
            list.next_id += 1;
            let block = ContentBlock {
                id: format!("block-{}", list.next_id),
                target,
                scope,
                reason: reason.trim().to_string(),
                added_by: by.to_string(),
                added_at: now,
            };
            list.blocks.push(block.clone());
            list.audit.push(AuditEntry::Added { block: block.clone() });
            Ok(block)
        })
    }

    /// Lifts a block; audited with who and why.
    pub fn lift(
        &mut self,
        id: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<ContentBlock, Error> {
        if reason.trim().is_empty() || by.trim().is_empty() {
            return Err(Error::Block(
                "lifting a block needs a reason and who lifts it (--reason, --by)".into(),
            ));
        }
        self.update(|list| {
            let index = list.blocks.iter().position(|block| block.id == id).ok_or_else(|| {
                Error::Block(format!("no block {id} in force; see `gantry block list`"))
            })?;
            let block = list.blocks.remove(index);
            list.audit.push(AuditEntry::Lifted {
                id: block.id.clone(),
                target: block.target.to_string(),
                by: by.to_string(),
                reason: reason.trim().to_string(),
                at: now,
            });
            Ok(block)
        })
    }
}

/// Blocked commits and package versions as exact values, for consumers that match only exact
/// commit ids and `name@version` (the engine's content blocklist).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConcreteBlocks {
    /// Full commit ids.
    pub commits: Vec<String>,
    /// `(name, version)` of every blocked package version found.
    pub packages: Vec<(String, String)>,
}

impl BlockList {
    /// Expands the blocks that apply to `pipeline` into the exact commits and package versions
    /// they match among `artifacts`: a range becomes the versions actually present. An
    /// unpinned dependency matches every range and is listed with version `*`.
    pub fn concrete(&self, artifacts: &[StoredArtifact], pipeline: &str) -> ConcreteBlocks {
        let mut concrete = ConcreteBlocks::default();
        for block in self.blocks.iter().filter(|block| block.scope.covers(pipeline)) {
            for manifest in artifacts.iter().map(|a| &a.manifest).filter(|m| m.pipeline == pipeline)
            {
                match &block.target {
                    BlockTarget::Commit { commit } => concrete.commits.extend(
                        manifest
                            .commits
                            .iter()
                            .map(|r| &r.commit.id)
                            .filter(|id| id.starts_with(commit.as_str()))
                            .cloned(),
                    ),
                    BlockTarget::Package { .. } => {
                        concrete.packages.extend(block.target.matching_dependencies(manifest).map(
                            |d| (d.name.clone(), d.version.clone().unwrap_or_else(|| "*".into())),
                        ))
                    }
                }
            }
        }
        concrete.commits.sort();
        concrete.commits.dedup();
        concrete.packages.sort();
        concrete.packages.dedup();
        concrete
    }
}

/// A reason an artifact may not start a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Blocker {
    /// The artifact contains a blocked commit or package version.
    Content { block_id: String, target: String, matched: String, reason: String },
    /// Commits no team member other than their authors approved.
    UnreviewedCommits { commits: Vec<UnreviewedCommit> },
}

/// A commit that lacks review, as a blocker names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnreviewedCommit {
    pub id: String,
    pub authors: Vec<String>,
    pub subject: String,
    /// How its author was established (see [`crate::artifact::Authorship`]).
    pub authorship: String,
    /// Approvals that count, and approvals needed.
    pub approvals: usize,
    pub needed: usize,
}

impl Blocker {
    /// Why the artifact is blocked.
    pub fn why(&self) -> String {
        match self {
            Blocker::Content { block_id, target, matched, reason } => {
                format!("contains {matched}, blocked by {block_id} ({target}): {reason}")
            }
            Blocker::UnreviewedCommits { commits } => {
                let listed: Vec<String> = commits
                    .iter()
                    .map(|c| {
                        format!(
                            "{} by {} (\"{}\"; author {}; {} of {} approvals)",
                            &c.id[..c.id.len().min(12)],
                            c.authors.join(", "),
                            c.subject,
                            c.authorship,
                            c.approvals,
                            c.needed
                        )
                    })
                    .collect();
                format!("{} unreviewed commit(s): {}", commits.len(), listed.join("; "))
            }
        }
    }

    /// What clears the blocker.
    pub fn clears_when(&self) -> String {
        match self {
            Blocker::Content { block_id, .. } => format!(
                "a newer artifact without it is built, or the block is lifted (`gantry block remove {block_id}`)"
            ),
            Blocker::UnreviewedCommits { .. } => {
                "a team member other than the author approves each commit, two members when its \
                 author is unauthenticated (`gantry review approve COMMIT`)"
                    .into()
            }
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; clears when {}", self.why(), self.clears_when())
    }
}

/// What an artifact's blockers are judged against.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The pipeline the artifact would deploy in: scopes the blocks.
    pub pipeline: &'a str,
    pub list: &'a BlockList,
    /// `None` when the pipeline does not require review. Otherwise every commit needs a reviewer
    /// other than its authors: recorded in the manifest at build time, or approved since in the
    /// book.
    pub reviews: Option<&'a ReviewBook>,
    /// The stored artifacts, to find the commits an artifact contains from its predecessors
    /// ([`crate::store::earlier_commits`]): a blocked commit blocks every later artifact built on
    /// it. Empty where only one artifact is at hand, as on a host.
    pub history: &'a [StoredArtifact],
}

impl<'a> Context<'a> {
    /// Content blocks only, judged on the artifact's own commits and dependencies.
    pub fn content_only(pipeline: &'a str, list: &'a BlockList) -> Context<'a> {
        Context { pipeline, list, reviews: None, history: &[] }
    }
}

/// Every blocker that keeps `manifest`'s artifact from deploying in the context's pipeline.
pub fn blockers(manifest: &Manifest, context: &Context) -> Vec<Blocker> {
    let mut found = Vec::new();
    let mut earlier: Option<Vec<String>> = None;
    for block in context.list.blocks.iter().filter(|block| block.scope.covers(context.pipeline)) {
        let matched = match &block.target {
            BlockTarget::Commit { commit } => {
                let earlier =
                    earlier.get_or_insert_with(|| earlier_commits(context.history, manifest));
                manifest
                    .commits
                    .iter()
                    .map(|record| record.commit.id.as_str())
                    .chain(std::iter::once(manifest.source.commit.as_str()))
                    .chain(earlier.iter().map(String::as_str))
                    .find(|id| id.starts_with(commit.as_str()))
                    .map(|id| format!("commit {}", &id[..id.len().min(12)]))
            }
            BlockTarget::Package { .. } => {
                block.target.matching_dependencies(manifest).next().map(|d| {
                    format!(
                        "{} {} (from {})",
                        d.name,
                        d.version.as_deref().unwrap_or("at an unpinned version"),
                        d.lock_file
                    )
                })
            }
        };
        if let Some(matched) = matched {
            found.push(Blocker::Content {
                block_id: block.id.clone(),
                target: block.target.to_string(),
                matched,
                reason: block.reason.clone(),
            });
        }
    }
    // What the published list names by digest, beyond what the provenance shows.
    for affected in context.list.affected.iter().filter(|a| a.digest == manifest.package.digest) {
        for block_id in &affected.block_ids {
            let already = found
                .iter()
                .any(|b| matches!(b, Blocker::Content { block_id: id, .. } if id == block_id));
            let Some(block) = context.list.blocks.iter().find(|b| b.id == *block_id) else {
                continue;
            };
            if !already && block.scope.covers(context.pipeline) {
                found.push(Blocker::Content {
                    block_id: block.id.clone(),
                    target: block.target.to_string(),
                    matched: "this artifact, named in the signed block list (it was built on \
                              a blocked artifact)"
                        .into(),
                    reason: block.reason.clone(),
                });
            }
        }
    }
    if let Some(book) = context.reviews {
        let commits: Vec<UnreviewedCommit> = manifest
            .commits
            .iter()
            .filter(|record| !record.is_reviewed(Some(book)))
            .map(|record| UnreviewedCommit {
                id: record.commit.id.clone(),
                authors: record.commit.authors().map(|p| p.to_string()).collect(),
                subject: record.commit.subject.clone(),
                authorship: record.authorship.describe(),
                approvals: record.counted_reviewers(Some(book)).len(),
                needed: record.approvals_needed(),
            })
            .collect();
        if !commits.is_empty() {
            found.push(Blocker::UnreviewedCommits { commits });
        }
    }
    found
}

/// A stage already running a blocked artifact: the engine rolls it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub stage: String,
    pub artifact: Digest,
    pub blockers: Vec<Blocker>,
}

/// Flags every `(stage, artifact)` in flight whose artifact has content blockers in the
/// context's pipeline. Only content blocks flag running stages: review is checked before a
/// deployment starts.
pub fn flag_running(running: &[(String, &Manifest)], context: &Context) -> Vec<Flag> {
    let content_only = Context { reviews: None, ..*context };
    running
        .iter()
        .filter_map(|(stage, manifest)| {
            let found = blockers(manifest, &content_only);
            (!found.is_empty()).then(|| Flag {
                stage: stage.clone(),
                artifact: manifest.package.digest,
                blockers: found,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::tests::sample_manifest;
    use crate::lockfiles::Dependency;

    fn now() -> Timestamp {
        "2026-11-03T09:00:00Z".parse().unwrap()
    }

    fn with_dependencies(dependencies: &[(Ecosystem, &str, Option<&str>)]) -> Manifest {
        let mut manifest = sample_manifest();
        manifest.dependencies = dependencies
            .iter()
            .map(|(ecosystem, name, version)| Dependency {
                ecosystem: *ecosystem,
                name: name.to_string(),
                version: version.map(str::to_string),
                checksum: None,
                lock_file: "lock".into(),
            })
            .collect();
        manifest
    }

    fn package(ecosystem: Option<Ecosystem>, name: &str, versions: &str) -> BlockTarget {
        BlockTarget::Package { ecosystem, name: name.into(), versions: versions.parse().unwrap() }
    }

    #[test]
    fn package_blocks_match_only_affected_artifacts() {
        let affected = with_dependencies(&[(Ecosystem::Npm, "left-pad", Some("1.3.0"))]);
        let patched = with_dependencies(&[(Ecosystem::Npm, "left-pad", Some("1.3.1"))]);
        let other_ecosystem = with_dependencies(&[(Ecosystem::Cargo, "left-pad", Some("1.3.0"))]);
        let unpinned = with_dependencies(&[(Ecosystem::Pypi, "Requests", None)]);
        let cases = [
            (package(Some(Ecosystem::Npm), "left-pad", ">=1.0.0, <1.3.1"), &affected, true),
            (package(Some(Ecosystem::Npm), "left-pad", ">=1.0.0, <1.3.1"), &patched, false),
            (package(Some(Ecosystem::Npm), "left-pad", ">=1.0.0, <1.3.1"), &other_ecosystem, false),
            (package(None, "left-pad", "=1.3.0"), &other_ecosystem, true),
            (package(Some(Ecosystem::Pypi), "requests", "<2.32"), &unpinned, true),
            (BlockTarget::Commit { commit: "1111111".into() }, &patched, true),
            (BlockTarget::Commit { commit: "2222222".into() }, &patched, false),
        ];
        for (target, manifest, expected) in cases {
            let mut list = BlockList::default();
            list.add(target.clone(), BlockScope::Organisation, "bad", "sec", now()).unwrap();
            let found = blockers(manifest, &Context::content_only("checkout-code", &list));
            assert_eq!(!found.is_empty(), expected, "{target} against {:?}", manifest.dependencies);
        }
    }

    #[test]
    fn scope_lift_and_audit() {
        let manifest = with_dependencies(&[(Ecosystem::Cargo, "serde", Some("1.0.210"))]);
        let mut list = BlockList::default();
        let block = list
            .add(
                package(None, "serde", "*"),
                BlockScope::Pipelines(vec!["payments-code".into()]),
                "CVE",
                "sec",
                now(),
            )
            .unwrap();
        assert!(blockers(&manifest, &Context::content_only("checkout-code", &list)).is_empty());
        assert_eq!(blockers(&manifest, &Context::content_only("payments-code", &list)).len(), 1);
        let running = [("gamma".to_string(), &manifest)];
        assert_eq!(
            flag_running(&running, &Context::content_only("payments-code", &list))[0].stage,
            "gamma"
        );

        assert!(list.lift(&block.id, "sec", " ", now()).is_err());
        list.lift(&block.id, "sec", "patched upstream", now()).unwrap();
        assert!(blockers(&manifest, &Context::content_only("payments-code", &list)).is_empty());
        assert!(
            matches!(&list.audit[..], [AuditEntry::Added { .. }, AuditEntry::Lifted { by, reason, .. }] if by == "sec" && reason == "patched upstream")
        );
        assert!(
            list.add(
                BlockTarget::Commit { commit: "abc".into() },
                BlockScope::Organisation,
                "x",
                "y",
                now()
            )
            .is_err()
        );
    }

    #[test]
    fn a_blocked_commit_blocks_later_artifacts_built_on_it() {
        let manifest = sample_manifest();
        let mut list = BlockList::default();
        let target = BlockTarget::Commit { commit: "abcdef0".into() };
        list.add(target, BlockScope::Organisation, "bad", "sec", now()).unwrap();
        // `history` holds the artifact built from the manifest's baseline, with `earlier_commit`.
        let with_history = |earlier_commit: &str| {
            let mut earlier = sample_manifest();
            earlier.source.commit = manifest.source.baseline.clone().unwrap();
            earlier.source.baseline = None;
            earlier.commits[0].commit.id = earlier_commit.repeat(4);
            let history = [StoredArtifact {
                digest: Digest::of(b"earlier"),
                manifest: earlier,
                manifest_bytes: Vec::new(),
                envelope: crate::dsse::Envelope {
                    payload: String::new(),
                    payload_type: String::new(),
                    signatures: vec![],
                },
                package_path: Default::default(),
            }];
            let context =
                Context { history: &history, ..Context::content_only("checkout-code", &list) };
            blockers(&manifest, &context).len()
        };
        assert_eq!(blockers(&manifest, &Context::content_only("checkout-code", &list)).len(), 0);
        assert_eq!(with_history("abcdef0123"), 1);
        assert_eq!(with_history("0123456789"), 0);
    }

    #[test]
    fn concurrent_additions_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.json");
        let threads: Vec<_> = (0..8)
            .map(|index| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut list = BlockList::open(&path).unwrap();
                    let target = BlockTarget::Commit { commit: format!("abcdef{index}") };
                    list.add(target, BlockScope::Organisation, "bad", "sec", now()).unwrap().id
                })
            })
            .collect();
        let mut ids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 8);
        let list = BlockList::open(&path).unwrap();
        assert_eq!((list.blocks.len(), list.audit.len()), (8, 8));
    }

    #[test]
    fn ranges_expand_to_the_versions_present() {
        let stored = |dependencies: &[(Ecosystem, &str, Option<&str>)], commit: char| {
            let mut manifest = with_dependencies(dependencies);
            manifest.commits[0].commit.id = commit.to_string().repeat(40);
            StoredArtifact {
                digest: Digest::of(&[commit as u8]),
                manifest,
                manifest_bytes: Vec::new(),
                envelope: crate::dsse::Envelope {
                    payload: String::new(),
                    payload_type: String::new(),
                    signatures: vec![],
                },
                package_path: Default::default(),
            }
        };
        let artifacts = [
            stored(
                &[
                    (Ecosystem::Npm, "left-pad", Some("1.3.0")),
                    (Ecosystem::Npm, "lodash", Some("4.17.20")),
                ],
                'a',
            ),
            stored(&[(Ecosystem::Npm, "left-pad", Some("1.2.0"))], 'b'),
            stored(&[(Ecosystem::Npm, "left-pad", Some("1.4.0"))], 'c'),
        ];
        let mut list = BlockList::default();
        list.add(package(None, "left-pad", "<1.4"), BlockScope::Organisation, "bad", "sec", now())
            .unwrap();
        list.add(
            BlockTarget::Commit { commit: "bbbbbbb".into() },
            BlockScope::Organisation,
            "bad",
            "sec",
            now(),
        )
        .unwrap();
        list.add(
            package(None, "lodash", "*"),
            BlockScope::Pipelines(vec!["other".into()]),
            "bad",
            "sec",
            now(),
        )
        .unwrap();
        let concrete = list.concrete(&artifacts, "checkout-code");
        assert_eq!(concrete.commits, ["b".repeat(40)]);
        assert_eq!(
            concrete.packages,
            [
                ("left-pad".to_string(), "1.2.0".to_string()),
                ("left-pad".to_string(), "1.3.0".to_string())
            ]
        );
    }

    #[test]
    fn unreviewed_commits_are_named() {
        let mut manifest = sample_manifest();
        manifest.commits[0].reviewers.clear();
        let list = BlockList::default();
        let (alice, alice_key) = crate::review::tests::member("alice", 1);
        let keyring = crate::review::Keyring { team: "t".into(), members: vec![alice] };
        let mut book = ReviewBook::in_memory(keyring);
        let review = |book: &ReviewBook| {
            let context =
                Context { reviews: Some(book), ..Context::content_only("checkout-code", &list) };
            blockers(&manifest, &context)
        };
        assert_eq!(
            review(&book).iter().map(Blocker::why).collect::<Vec<_>>(),
            ["1 unreviewed commit(s): 111111111111 by Bob <bob@example.com> (\"Add discounts\"; \
                 author bob (SSH signature SHA256:6Vq0bGcTgqjXxPvV3JzvvOfhwjlWoCK6yPN4HKL3vnI); 0 \
                 of 1 approvals)"]
        );
        book.approve(&alice_key, "repo", &manifest.commits[0].commit, now()).unwrap();
        assert!(review(&book).is_empty(), "an approval after the build counts");
        assert!(blockers(&manifest, &Context::content_only("checkout-code", &list)).is_empty());
    }
}
