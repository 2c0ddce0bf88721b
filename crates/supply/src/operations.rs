//! The supply chain's use cases, as the CLI and the controller both call them: build a commit
//! and check what it carries, poll a source and build its new mainline head, assemble a
//! verification, find the artifacts a block affects. Each works on one [`Home`].
//!
//! The controller's build loop calls [`build_or_resume`] with a [`BuildJob`] whose role is
//! [`BuilderRole::Service`] for each new mainline head of a pipeline's source: it builds the
//! head as the trusted build service, signs it, checks reviews and content blockers, and
//! returns the stored artifact with its verdict and its [`Position`] ([`Checked`]).
//! [`poll_and_build`] is the same with a poller's memory in the home (`gantry poll`). `gantry build` calls [`build_and_check`] with
//! [`BuilderRole::Local`]. Hosts and `gantry artifact verify` call [`Verification::check`].
//! Approvals arrive through [`approve`] (a reviewer's key) or [`receive_webhook`] (a verified
//! forge delivery); blocks reach hosts through [`publish_blocks`].
//!
//! Every function here blocks (git, the sandbox, the filesystem): an async caller runs it on a
//! blocking thread. Builds of one home may run concurrently: each gets its own scratch
//! directory, and the files they share are written under locks or atomically.
//!
//! These functions are safe to call again after a crash: the store never overwrites (a rebuild
//! of the same commit reproduces the same digest and reports [`Error::AlreadyStored`]). The
//! poller of [`poll_and_build`] writes its memory before the build starts, so a head is built
//! at most once (and one lost to a crash mid-build is not built again): the controller, which
//! must not lose a head, keeps its own memory instead and calls [`build_or_resume`], which
//! hands back the artifact a crashed run already stored rather than building it again.

use std::path::PathBuf;

use crate::blocks::{BlockList, Blocker, Context, blockers};
use crate::build::{BuildRequest, Builder, BuilderRole, Built, Sandbox};
use crate::home::Home;
use crate::keys::{TrustedKeys, parse_public_key};
use crate::published_blocks::{PUBLISHED_BLOCKS_PAYLOAD_TYPE, PublishedBlocks};
use crate::review::{Approval, ReviewBook};
use crate::source::Commit;
use crate::source::{Poller, Repository, Trigger};
use crate::store::{Store, StoredArtifact};
use crate::verify::{self, Failure, Inputs, Policy, Verified};
use crate::webhook::{Delivery, Forge, PushEvent, WebhookEvent};
use crate::{Digest, Error};

/// One pipeline's build, as its definition and its builder say.
#[derive(Clone, Debug)]
pub struct BuildJob {
    pub request: BuildRequest,
    pub sandbox: Sandbox,
    pub role: BuilderRole,
}

impl BuildJob {
    /// The job for a pipeline definition built from `source` (one of its `sources`), at the
    /// mainline head, in the best sandbox this machine has.
    pub fn for_pipeline(
        spec: &gantry_model::pipeline::PipelineSpec,
        source: &gantry_model::Source,
        role: BuilderRole,
    ) -> BuildJob {
        BuildJob {
            request: BuildRequest {
                service: spec.service.clone(),
                pipeline: spec.pipeline.clone(),
                source: source.clone(),
                build: spec.build.clone(),
                review_required: spec.code_review == gantry_model::pipeline::CodeReview::Required,
                commit: None,
                since: None,
                trusted_base: None,
                env: Default::default(),
                read_only_paths: Vec::new(),
            },
            sandbox: Sandbox::detect(),
            role,
        }
    }
}

/// A built, signed and stored artifact with its verdict.
#[derive(Clone, Debug)]
pub struct Checked {
    pub built: Built,
    /// Everything that keeps it from deploying now: content blocks (its own commits, its
    /// dependencies, or a blocked commit in an artifact it was built on) and unreviewed commits.
    pub blockers: Vec<Blocker>,
    /// The key id of the build key that signed it.
    pub signed_by: String,
    /// Approvals in the review book that did not check out and were ignored, to report.
    pub ignored_approvals: Vec<String>,
    /// Where it sits on the pipeline's mainline, and the position of its base.
    pub position: Position,
}

/// Where an artifact sits on its pipeline's mainline, as the engine numbers artifacts: the
/// depth of its commit ([`Repository::depth`]), and the depth of the commit of the artifact its
/// commit range was computed from (its base, [`crate::build::Base::Artifact`]); `previous` is
/// `None` when the range started at a configured trusted base. So the engine's "contains"
/// walk (`previous` links) and the supply chain's commit ranges are one definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub sequence: u64,
    pub previous: Option<u64>,
}

/// The [`Position`] of an artifact built from `repository` (its pipeline's source).
pub fn position(
    repository: &Repository,
    manifest: &crate::artifact::Manifest,
) -> Result<Position, Error> {
    let sequence = repository.depth(&manifest.source.commit)?;
    let previous = match (&manifest.source.base_artifact, &manifest.source.baseline) {
        (Some(_), Some(baseline)) => Some(repository.depth(baseline)?),
        _ => None,
    };
    Ok(Position { sequence, previous })
}

impl Checked {
    pub fn digest(&self) -> Digest {
        self.built.artifact.digest
    }

    /// Whether nothing blocks it.
    pub fn deployable(&self) -> bool {
        self.blockers.is_empty()
    }
}

/// Builds one commit of a pipeline (the request's, else the mainline head), signs it with the
/// home's active build key, stores it, and checks what blocks it.
pub fn build_and_check(home: &Home, job: &BuildJob) -> Result<Checked, Error> {
    let store = home.store();
    let key = home.keys().active_key()?;
    let reviews = home.reviews()?;
    let blocks = home.blocks()?;
    let builder = Builder {
        store: &store,
        key: &key,
        reviews: &reviews,
        blocks: &blocks,
        work_dir: home.work_dir(),
        cache_dir: home.cache_dir(),
        role: job.role,
        host: hostname(),
        sandbox: job.sandbox,
        hidden: home.hidden_from_builds(),
    };
    let built = builder.build(&job.request)?;
    let blockers = artifact_blockers(
        home,
        &built.artifact.manifest,
        job.request.review_required.then_some(&reviews),
    )?;
    let repository = home.open_repository(&job.request.source)?;
    let position = position(&repository, &built.artifact.manifest)?;
    Ok(Checked {
        built,
        blockers,
        signed_by: key.keyid.clone(),
        ignored_approvals: reviews.rejected.clone(),
        position,
    })
}

/// The artifacts of the job's pipeline and source stored by the job's builder (its role in its
/// sandbox), oldest first: what the controller built before, whether or not it got as far as
/// handing them on.
pub fn stored_builds(home: &Home, job: &BuildJob) -> Result<Vec<StoredArtifact>, Error> {
    let builder = crate::build::builder_id(job.role, job.sandbox);
    let repository = crate::source::normalize_repository(&job.request.source.repository);
    Ok(home
        .store()
        .list()?
        .into_iter()
        .filter(|stored| {
            let manifest = &stored.manifest;
            manifest.builder.id == builder
                && manifest.pipeline == job.request.pipeline
                && manifest.source.branch == job.request.source.branch
                && crate::source::normalize_repository(&manifest.source.repository) == repository
        })
        .collect())
}

/// A stored artifact with its verdict as it stands now (blocks and reviews are read afresh).
pub fn check_stored(home: &Home, job: &BuildJob, stored: StoredArtifact) -> Result<Checked, Error> {
    let reviews = home.reviews()?;
    let blockers =
        artifact_blockers(home, &stored.manifest, job.request.review_required.then_some(&reviews))?;
    let repository = home.open_repository(&job.request.source)?;
    let position = position(&repository, &stored.manifest)?;
    let log = home.store().read_log(&stored.digest).unwrap_or_default();
    let signed_by = stored.envelope.signatures.first().map(|s| s.keyid.clone()).unwrap_or_default();
    Ok(Checked {
        built: Built { artifact: stored, log, elapsed: std::time::Duration::ZERO },
        blockers,
        signed_by,
        ignored_approvals: reviews.rejected.clone(),
        position,
    })
}

/// Builds the job's commit (the request's, else the mainline head) like [`build_and_check`],
/// unless the job's builder already stored an artifact of that commit — a build that finished
/// before a crash — which is then handed back checked instead of being built again. A rebuild
/// that reproduces a stored digest ([`Error::AlreadyStored`]) hands back the stored one too.
/// So calling it again for a head whose hand-off was lost always ends with the same artifact.
pub fn build_or_resume(home: &Home, job: &BuildJob) -> Result<Checked, Error> {
    let commit = match &job.request.commit {
        Some(revision) => home.open_repository(&job.request.source)?.resolve(revision)?,
        None => home.open_repository(&job.request.source)?.head()?,
    };
    let earlier =
        stored_builds(home, job)?.into_iter().rev().find(|s| s.manifest.source.commit == commit);
    if let Some(stored) = earlier {
        return check_stored(home, job, stored);
    }
    let single = BuildJob {
        request: BuildRequest { commit: Some(commit), ..job.request.clone() },
        ..job.clone()
    };
    match build_and_check(home, &single) {
        Err(Error::AlreadyStored { digest }) => {
            let stored = home.store().get(&digest.to_string())?;
            check_stored(home, job, stored)
        }
        outcome => outcome,
    }
}

/// A new mainline head found by [`poll_and_build`], and how its build went.
#[derive(Debug)]
pub struct Polled {
    pub trigger: Trigger,
    pub outcome: Result<Checked, Error>,
}

/// Looks at the job's source once; when its mainline head moved since the last poll, builds the
/// new head ([`build_and_check`]). `Ok(None)` when nothing changed. The head is remembered in
/// the home before building, so a failed build is reported once, not retried on every poll;
/// push a fix (or build by hand) to try again.
pub fn poll_and_build(home: &Home, job: &BuildJob) -> Result<Option<Polled>, Error> {
    let path = home.poller_path();
    let repository = home.open_repository(&job.request.source)?;
    // Read, poll and write under the file's lock: pipelines polled at once keep each other's
    // heads.
    let polled = crate::store::with_lock(&path, || {
        let mut poller: Poller = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
                Error::invalid(&path, format!("not a poller state file: {error}"))
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Poller::default(),
            Err(error) => return Err(Error::io(&path, error)),
        };
        let Some(trigger) = poller.poll(&repository)? else {
            return Ok(None);
        };
        crate::store::write_atomically(
            &path,
            &serde_json::to_vec_pretty(&poller).expect("poller state serializes"),
        )?;
        Ok(Some(trigger))
    })?;
    let Some(trigger) = polled else {
        return Ok(None);
    };
    let single = BuildJob {
        request: BuildRequest { commit: Some(trigger.commit.clone()), ..job.request.clone() },
        ..job.clone()
    };
    let outcome = build_and_check(home, &single);
    Ok(Some(Polled { trigger, outcome }))
}

/// What keeps a stored artifact from deploying, read from the home: content blocks, blocked
/// commits in artifacts it was built on, and (with `reviews`) unreviewed commits.
pub fn artifact_blockers(
    home: &Home,
    manifest: &crate::artifact::Manifest,
    reviews: Option<&ReviewBook>,
) -> Result<Vec<Blocker>, Error> {
    let history = home.store().list()?;
    let list = home.blocks()?;
    let context = Context { pipeline: &manifest.pipeline, list: &list, reviews, history: &history };
    Ok(blockers(manifest, &context))
}

/// The stored artifacts a content block affects, oldest first: those it blocks directly and
/// those built on a commit it blocks.
pub fn affected_by_block(
    store: &Store,
    list: &BlockList,
    block_id: &str,
) -> Result<Vec<StoredArtifact>, Error> {
    let all = store.list()?;
    let affected = all
        .iter()
        .filter(|artifact| {
            let context = Context {
                history: &all,
                ..Context::content_only(&artifact.manifest.pipeline, list)
            };
            blockers(&artifact.manifest, &context)
                .iter()
                .any(|b| matches!(b, Blocker::Content { block_id: id, .. } if id == block_id))
        })
        .cloned()
        .collect();
    Ok(affected)
}

/// Records the holder of reviewer `key` approving `revision` (id, prefix, tag or branch) of
/// `source`, signed, in the home's review book. Refused when the home has no keyring, when the
/// key is no member's, or when the member wrote the commit.
pub fn approve(
    home: &Home,
    key: &crate::keys::KeyPair,
    source: &gantry_model::Source,
    revision: &str,
    now: jiff::Timestamp,
) -> Result<(Approval, Commit), Error> {
    let repository = home.open_repository(source)?;
    let commit = crate::review::commit_to_review(&repository, revision)?;
    let mut book = home.reviews()?;
    if book.keyring().members.is_empty() {
        return Err(Error::Review(format!(
            "no team keyring at {}: nobody may approve yet; add members with `gantry review \
             member add`",
            home.keyring_path().display()
        )));
    }
    let approval = book.approve(key, &source.repository, &commit, now)?;
    Ok((approval, commit))
}

/// What a forge delivery did.
#[derive(Clone, Debug)]
pub enum Received {
    /// An approval, now in the review book (with the pull request's author, when the forge named
    /// a member: that authenticates who wrote the commit).
    Approved(Approval),
    /// A push to a branch: the caller builds its head if it is the mainline.
    Pushed(PushEvent),
    Ignored {
        reason: String,
    },
}

/// Authenticates a forge webhook delivery with the shared `secret` and applies it; approvals
/// are checked against the commit as `source` has it.
pub fn receive_webhook(
    home: &Home,
    forge: Forge,
    delivery: &Delivery,
    secret: &str,
    source: &gantry_model::Source,
    now: jiff::Timestamp,
) -> Result<Received, Error> {
    match crate::webhook::receive(forge, delivery, secret)? {
        WebhookEvent::Approval(approval) => {
            let repository = home.open_repository(source)?;
            let commit = repository.commit(&approval.commit)?;
            let recorded = home.reviews()?.import_forge(&approval, &commit, now)?;
            Ok(Received::Approved(recorded))
        }
        WebhookEvent::Push(push) => Ok(Received::Pushed(push)),
        WebhookEvent::Ignored { reason } => Ok(Received::Ignored { reason }),
    }
}

/// Publishes the home's block list for hosts: signed by the trust root, naming every stored
/// artifact each block affects, fresh for `max_age_seconds` from `now` (see
/// [`crate::published_blocks`]). Written to `path` (readable) and `<path>.dsse` (what hosts
/// read). The controller calls it after every change and again before the list goes stale.
pub fn publish_blocks(
    home: &Home,
    path: &std::path::Path,
    now: jiff::Timestamp,
    max_age_seconds: i64,
) -> Result<PublishedBlocks, Error> {
    if !(1..=crate::published_blocks::MAX_MAX_AGE_SECONDS).contains(&max_age_seconds) {
        return Err(Error::Block(format!(
            "a block list's maximum age must be between 1s and {}s",
            crate::published_blocks::MAX_MAX_AGE_SECONDS
        )));
    }
    let list = home.blocks()?;
    let store = home.store();
    let mut affected: Vec<crate::blocks::AffectedArtifact> = Vec::new();
    for block in &list.blocks {
        for artifact in affected_by_block(&store, &list, &block.id)? {
            match affected.iter_mut().find(|a| a.digest == artifact.digest) {
                Some(entry) => entry.block_ids.push(block.id.clone()),
                None => affected.push(crate::blocks::AffectedArtifact {
                    digest: artifact.digest,
                    block_ids: vec![block.id.clone()],
                }),
            }
        }
    }
    let expires_at = now
        .checked_add(jiff::SignedDuration::from_secs(max_age_seconds))
        .map_err(|error| Error::Block(format!("cannot add the maximum age: {error}")))?;
    let published =
        PublishedBlocks { published_at: now, expires_at, blocks: list.blocks.clone(), affected };
    let mut bytes = serde_json::to_vec_pretty(&published).expect("block list serializes");
    bytes.push(b'\n');
    home.keys().sign_document(path, &bytes, PUBLISHED_BLOCKS_PAYLOAD_TYPE)?;
    Ok(published)
}

/// Where a verifier takes its trusted build keys from. Trust is pinned by default: the trust
/// list is read only from its copy signed by the trust root — the configured one, else the one
/// pinned in the verifier's home ([`crate::keys::TRUST_PIN_FILE`]), else the one the list names
/// on first use, pinned from then on — and never at a version older than one accepted before.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// The trust list [default: the home's `keys/trusted-keys.json`]; its signed copy is
    /// `<path>.dsse`.
    pub trusted_keys: Option<PathBuf>,
    /// The trust root's public key (base64); must match the pinned one.
    pub trust_root: Option<String>,
    /// The lowest trust-list version accepted, on top of the pinned one.
    pub minimum_version: u64,
    /// A signed block list published by the builder ([`crate::published_blocks::PublishedBlocks`]),
    /// checked against the same root and its maximum age; without one the home's own block list
    /// is used (a builder's view of its own blocks).
    pub published_blocks: Option<PathBuf>,
}

/// Everything one verification needs, read once from a home: the trust list, the review book,
/// the block list and the stored history, with the policy to apply.
#[derive(Debug)]
pub struct Verification {
    pub trusted: TrustedKeys,
    pub reviews: ReviewBook,
    pub blocks: BlockList,
    pub history: Vec<StoredArtifact>,
    /// Artifacts verified before that are not in the store (a host's memory).
    pub bases: Vec<crate::verify::VerifiedBase>,
    pub policy: Policy,
}

impl Verification {
    /// Reads what verifying needs from `home`, taking build keys (and the block list) as
    /// `trust` says; `now` judges the block list's age. Pins the trust root and the trust
    /// list's version in the home on first use and on every newer version.
    pub fn assemble(
        home: &Home,
        trust: &Trust,
        policy: Policy,
        now: jiff::Timestamp,
    ) -> Result<Verification, Error> {
        let trusted_path =
            trust.trusted_keys.clone().unwrap_or_else(|| home.keys().trusted_keys_path());
        let pin_path = home.root().join(crate::keys::TRUST_PIN_FILE);
        let trusted = crate::keys::read_pinned(
            &trusted_path,
            &pin_path,
            trust.trust_root.as_deref(),
            trust.minimum_version,
        )?;
        let blocks = match &trust.published_blocks {
            Some(path) => {
                let root =
                    trusted.trust_root.as_deref().and_then(parse_public_key).ok_or_else(|| {
                        Error::Key(
                            "the trust list names no trust root to check the block list".into(),
                        )
                    })?;
                let pin = home.root().join(crate::published_blocks::BLOCKS_PIN_FILE);
                let published =
                    crate::published_blocks::PublishedBlocks::read_pinned(path, &root, now, &pin)?;
                published.into_list()
            }
            None => home.blocks()?,
        };
        Ok(Verification {
            trusted,
            reviews: home.reviews()?,
            blocks,
            history: home.store().list()?,
            bases: Vec::new(),
            policy,
        })
    }

    /// Verifies one artifact from its package digest (computed by the caller from the bytes),
    /// its DSSE envelope and, when at hand, its manifest.
    pub fn check(
        &self,
        package_digest: Digest,
        envelope: &[u8],
        manifest: Option<&[u8]>,
    ) -> Result<Verified, Failure> {
        let inputs = Inputs {
            package_digest,
            envelope,
            manifest,
            trusted: &self.trusted,
            blocks: Some(&self.blocks),
            reviews: &self.reviews,
            history: &self.history,
            bases: &self.bases,
        };
        verify::verify(&inputs, &self.policy)
    }

    /// Verifies a stored artifact, re-hashing its package: an altered file fails the digest
    /// check with what it hashes to now.
    pub fn check_stored(
        &self,
        store: &Store,
        stored: &StoredArtifact,
    ) -> Result<Result<Verified, Failure>, Error> {
        let digest = stored_digest(store, stored)?;
        let envelope = store.read_attestation(&stored.digest)?;
        Ok(self.check(digest, &envelope, Some(&stored.manifest_bytes)))
    }
}

/// The digest a stored package's bytes have now: its name, unless the file was altered, in which
/// case the digest check reports what it hashes to.
pub fn stored_digest(store: &Store, stored: &StoredArtifact) -> Result<Digest, Error> {
    match store.read_package(&stored.digest) {
        Ok(_) => Ok(stored.digest),
        Err(Error::Corrupt { actual, .. }) => Ok(actual),
        Err(error) => Err(error),
    }
}

/// This machine's host name, recorded in the provenance.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
