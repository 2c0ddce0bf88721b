//! The controller's build loop: every pipeline of the running organisation that has a source
//! and a build is polled every [`DEFAULT_POLL_INTERVAL`]; a new mainline head is built as the
//! trusted build service (`gantry_supply::operations::build_or_resume`, role
//! [`BuilderRole::Service`]), signed, checked for reviews and content blocks, verified against
//! the supply home's trust list, and handed to the engine as [`Input::ArtifactReady`].
//!
//! Each poll of a pipeline runs on a blocking thread of its own, never on the round thread:
//! two slow builds stall neither the rounds nor each other. The same loop keeps the home's
//! content blocks in the engine ([`Input::ContentBlocklist`]) and republishes the signed block
//! list the agents fetch (`publish_blocks`) on every change of the blocks and every
//! [`REPUBLISH_INTERVAL`], well within its [`PUBLISHED_BLOCKS_MAX_AGE`].
//!
//! Crash safety: the loop keeps no durable memory of its own. Its memory of the last head
//! handled is in memory only; after a restart every pipeline's head is looked at again, and
//! `build_or_resume` hands back the artifact a crashed run already stored (or builds it if the
//! crash came first). Stored builds newer than anything the engine knows are handed over again
//! on the first poll. The engine takes an `ArtifactReady` it already holds (same digest at the
//! same position) as a refresh of its reviews, so handing over twice changes nothing: a
//! `kill -9` mid-build loses no head, and builds none twice once stored.
//!
//! A failed build is reported in the API (`GET /api/v1/builds`) and the audit log with its
//! pipeline, commit and error; it is not retried until the head moves (or the server restarts).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use gantry_engine::{ArtifactReady, ContentBlocklist, Input, Package};
use gantry_model::Timestamp;
use gantry_model::pipeline::PipelineSpec;
use gantry_supply::blocks::Blocker as SupplyBlocker;
use gantry_supply::build::BuilderRole;
use gantry_supply::home::Home;
use gantry_supply::operations::{self, BuildJob, Checked, Trust, Verification};
use serde::Serialize;

use crate::server::{Controller, audit_record};

/// How often each pipeline's source is looked at: a few seconds keeps a push-to-build delay
/// short while a `git rev-parse` per pipeline costs little.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(3);

/// How long a published block list stays fresh for the boxes: an hour, so a controller outage
/// shorter than that leaves the boxes deploying, and a longer one fails them closed.
pub const PUBLISHED_BLOCKS_MAX_AGE: Duration = Duration::from_secs(3600);

/// How often the block list is republished even when unchanged: a sixth of its maximum age, so
/// a box never reads one near going stale.
pub const REPUBLISH_INTERVAL: Duration = Duration::from_secs(600);

/// The most stored builds of one pipeline handed to the engine again on the first poll after
/// a start: more than a crash can leave unhanded (one per build in flight).
pub const MAX_RESUBMITTED: usize = 16;

/// The longest build error kept for the API and the audit log; the whole log stays in the
/// home's `work/logs/`.
pub const MAX_ERROR_BYTES: usize = 4096;

/// How the controller builds.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    /// The supply home: keys, the store, the review book, the blocks.
    pub home: PathBuf,
    pub poll_interval: Duration,
    /// Per pipeline, the trusted base its first build's range starts after (a commit, or
    /// `root` for all of history): without one the first build is refused.
    pub trusted_bases: BTreeMap<String, String>,
}

impl BuildConfig {
    pub fn new(home: PathBuf) -> BuildConfig {
        BuildConfig { home, poll_interval: DEFAULT_POLL_INTERVAL, trusted_bases: BTreeMap::new() }
    }
}

/// One pipeline's builds, as the API shows them.
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub struct PipelineBuilds {
    /// The commit being built now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    /// The last mainline head handled (built and handed to the engine, or failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<String>,
    /// The artifact of the last head, when its build succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_artifact: Option<gantry_model::Digest>,
    /// The last failure since the last success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<BuildFailure>,
}

/// A build that failed, or a source that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BuildFailure {
    /// The commit, when the source could be read that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub error: String,
    pub at: Timestamp,
}

/// `GET /api/v1/builds`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct BuildsView {
    /// Whether this controller builds (a supply home is configured).
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supply_home: Option<String>,
    /// Per pipeline with a source and a build.
    pub pipelines: BTreeMap<String, PipelineBuilds>,
}

/// The build loop's shared state: its configuration, the pipelines it builds, their status.
#[derive(Debug, Default)]
pub struct Builds {
    config: Option<BuildConfig>,
    specs: RwLock<BTreeMap<String, PipelineSpec>>,
    status: Mutex<BTreeMap<String, PipelineBuilds>>,
    /// Pipelines with a poll running on a blocking thread.
    in_flight: Mutex<BTreeSet<String>>,
    /// Pipelines whose stored builds were handed over again since the start.
    resumed: Mutex<BTreeSet<String>>,
    /// What was last handed to the engine and published, to notice changes.
    blocks: Mutex<BlocksState>,
}

#[derive(Debug, Default)]
struct BlocksState {
    list: Option<gantry_supply::blocks::BlockList>,
    engine: Option<ContentBlocklist>,
    published_at: Option<Instant>,
    running: bool,
}

impl Builds {
    pub fn new(config: Option<BuildConfig>) -> Builds {
        Builds { config, ..Builds::default() }
    }

    pub fn config(&self) -> Option<&BuildConfig> {
        self.config.as_ref()
    }

    /// The supply home, when the controller builds.
    pub fn home(&self) -> Option<Home> {
        self.config.as_ref().and_then(|config| Home::new(&config.home).ok())
    }

    /// The organisation's pipelines changed: build these from now on.
    pub fn set_specs(&self, specs: BTreeMap<String, PipelineSpec>) {
        *self.specs.write().expect("specs lock") = specs;
    }

    pub fn spec(&self, pipeline: &str) -> Option<PipelineSpec> {
        self.specs.read().expect("specs lock").get(pipeline).cloned()
    }

    pub fn view(&self) -> BuildsView {
        let specs = self.specs.read().expect("specs lock");
        let status = self.status.lock().expect("status lock");
        BuildsView {
            enabled: self.config.is_some(),
            supply_home: self.config.as_ref().map(|c| c.home.display().to_string()),
            pipelines: specs
                .keys()
                .filter(|name| self.config.is_some() && builds(&specs[*name]))
                .map(|name| (name.clone(), status.get(name).cloned().unwrap_or_default()))
                .collect(),
        }
    }

    fn update(&self, pipeline: &str, change: impl FnOnce(&mut PipelineBuilds)) {
        change(self.status.lock().expect("status lock").entry(pipeline.to_string()).or_default());
    }
}

/// Whether a pipeline is built by the controller.
fn builds(spec: &PipelineSpec) -> bool {
    !spec.sources.is_empty() && !spec.build.command.trim().is_empty()
}

/// Runs the build loop until the task is aborted (see the module documentation).
pub async fn run(controller: Arc<Controller>) {
    let Some(config) = controller.builds.config().cloned() else { return };
    tracing::info!(home = %config.home.display(), "building pipelines");
    let mut interval = tokio::time::interval(config.poll_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        start_blocks_refresh(&controller);
        let specs: Vec<(String, PipelineSpec)> = controller
            .builds
            .specs
            .read()
            .expect("specs lock")
            .iter()
            .filter(|(_, spec)| builds(spec))
            .map(|(name, spec)| (name.clone(), spec.clone()))
            .collect();
        for (name, spec) in specs {
            if !controller.builds.in_flight.lock().expect("in-flight lock").insert(name.clone()) {
                continue;
            }
            let controller = controller.clone();
            // Detached: the poll finishes (or dies with the process) on its own thread.
            drop(tokio::task::spawn_blocking(move || {
                poll_pipeline(&controller, &name, &spec);
                controller.builds.in_flight.lock().expect("in-flight lock").remove(&name);
            }));
        }
    }
}

/// The build job of a pipeline, as this controller runs it.
fn job(config: &BuildConfig, name: &str, spec: &PipelineSpec) -> BuildJob {
    let mut job = BuildJob::for_pipeline(spec, &spec.sources[0], BuilderRole::Service);
    job.request.trusted_base = config.trusted_bases.get(name).cloned();
    job
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" […]");
    }
    text
}

/// One poll of one pipeline, on a blocking thread.
fn poll_pipeline(controller: &Controller, name: &str, spec: &PipelineSpec) {
    let builds = &controller.builds;
    let (Some(config), Some(home)) = (builds.config(), builds.home()) else { return };
    let job = job(config, name, spec);
    let head = match home.open_repository(&job.request.source).and_then(|r| r.head()) {
        Ok(head) => head,
        Err(error) => return fail(controller, name, None, error.to_string()),
    };
    let last =
        builds.status.lock().expect("status lock").get(name).and_then(|s| s.last_commit.clone());
    if last.as_deref() == Some(head.as_str()) {
        return;
    }
    if builds.resumed.lock().expect("resumed lock").insert(name.to_string()) {
        resubmit_stored(controller, &home, name, &job);
    }
    builds.update(name, |status| status.building = Some(head.clone()));
    let single = BuildJob {
        request: gantry_supply::build::BuildRequest {
            commit: Some(head.clone()),
            ..job.request.clone()
        },
        ..job.clone()
    };
    let started = Instant::now();
    let outcome = operations::build_or_resume(&home, &single);
    builds.update(name, |status| status.building = None);
    match outcome {
        Ok(checked) => {
            tracing::info!(
                pipeline = name,
                commit = %head,
                digest = %checked.digest(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                blockers = checked.blockers.len(),
                "built"
            );
            let (ready, refusal) = artifact_ready(&home, &single, spec, &checked);
            let blocklist = engine_blocklist(controller, &home);
            controller.submit(
                blocklist
                    .into_iter()
                    .chain([Input::ArtifactReady { pipeline: name.to_string(), artifact: ready }]),
            );
            let digest = checked.digest();
            builds.update(name, |status| {
                status.last_commit = Some(head.clone());
                status.last_artifact = Some(digest);
                status.last_failure = None;
            });
            if let Some(reason) = refusal {
                fail(controller, name, Some(head), format!("{digest} did not verify: {reason}"));
            }
        }
        Err(error) => {
            builds.update(name, |status| {
                status.last_commit = Some(head.clone());
                status.last_artifact = None;
            });
            fail(controller, name, Some(head), error.to_string());
        }
    }
}

/// Hands the engine again the stored builds of `name` newer than anything it knows: those a
/// crash kept from being handed over (at most [`MAX_RESUBMITTED`]).
fn resubmit_stored(controller: &Controller, home: &Home, name: &str, job: &BuildJob) {
    let known: Vec<(gantry_model::Digest, u64)> = controller
        .pipeline_view(name)
        .map(|view| view.artifacts.iter().map(|a| (a.digest, a.sequence)).collect())
        .unwrap_or_default();
    let newest_known = known.iter().map(|(_, sequence)| *sequence).max();
    let stored = match operations::stored_builds(home, job) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(pipeline = name, %error, "could not list the stored builds");
            return;
        }
    };
    let skip = stored.len().saturating_sub(MAX_RESUBMITTED);
    let spec = controller.builds.spec(name);
    let mut inputs = Vec::new();
    for artifact in stored.into_iter().skip(skip) {
        if known.iter().any(|(digest, _)| *digest == artifact.digest) {
            continue;
        }
        let Some(spec) = &spec else { return };
        match operations::check_stored(home, job, artifact) {
            Ok(checked) if newest_known.is_none_or(|n| checked.position.sequence > n) => {
                let (ready, _) = artifact_ready(home, job, spec, &checked);
                inputs.push(Input::ArtifactReady { pipeline: name.to_string(), artifact: ready });
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(pipeline = name, %error, "a stored build is unreadable"),
        }
    }
    if !inputs.is_empty() {
        tracing::info!(
            pipeline = name,
            artifacts = inputs.len(),
            "handing stored builds over again"
        );
        controller.submit(engine_blocklist(controller, home).into_iter().chain(inputs));
    }
}

/// Records a failure for the API and, when it is news, in the audit log.
fn fail(controller: &Controller, name: &str, commit: Option<String>, error: String) {
    let error = truncate(error);
    let now = Timestamp::now();
    let mut news = false;
    controller.builds.update(name, |status| {
        let same = status
            .last_failure
            .as_ref()
            .is_some_and(|last| last.commit == commit && last.error == error);
        news = !same;
        if !same {
            status.last_failure =
                Some(BuildFailure { commit: commit.clone(), error: error.clone(), at: now });
        }
    });
    if !news {
        return;
    }
    tracing::warn!(pipeline = name, commit = commit.as_deref().unwrap_or("-"), %error, "build failed");
    controller.metrics.build_failures.inc();
    let record = audit_record(
        now,
        serde_json::json!({"kind": "build_failed", "by": "gantry server", "pipeline": name,
                           "commit": commit, "error": error}),
    );
    if let Err(error) = controller.store.lock().expect("store lock").append_audit(&[record]) {
        tracing::error!(%error, "could not audit a failed build");
    }
}

/// The engine's view of a checked artifact, and why its signature or provenance did not verify
/// (then `signature_verified` is false and the engine refuses it, keeping its commits).
fn artifact_ready(
    home: &Home,
    job: &BuildJob,
    spec: &PipelineSpec,
    checked: &Checked,
) -> (ArtifactReady, Option<String>) {
    let manifest = &checked.built.artifact.manifest;
    let book = home.reviews().ok();
    let unreviewed: BTreeSet<&str> = checked
        .blockers
        .iter()
        .flat_map(|blocker| match blocker {
            SupplyBlocker::UnreviewedCommits { commits } => {
                commits.iter().map(|c| c.id.as_str()).collect()
            }
            SupplyBlocker::Content { .. } => Vec::new(),
        })
        .collect();
    let commits = manifest
        .commits
        .iter()
        .map(|record| gantry_engine::Commit {
            id: record.commit.id.clone(),
            author: record.commit.author.email.clone(),
            // The supply chain's count of approvals is the one that decides (an unauthenticated
            // author's commit needs more than one): the engine sees none where it says so.
            approvers: if unreviewed.contains(record.commit.id.as_str()) {
                Vec::new()
            } else {
                record.counted_reviewers(book.as_ref())
            },
        })
        .collect();
    let packages = manifest
        .dependencies
        .iter()
        .map(|d| Package { name: d.name.clone(), version: d.version.clone().unwrap_or("*".into()) })
        .collect();
    let refusal = verify(home, job, spec, checked).err();
    let ready = ArtifactReady {
        digest: checked.digest(),
        sequence: checked.position.sequence,
        previous: checked.position.previous,
        commits,
        packages,
        signature_verified: refusal.is_none(),
    };
    (ready, refusal)
}

/// Verifies the stored artifact as a box would: signature by a key of the home's trust list,
/// the digest, this controller's builder identity, the pipeline's repository, branch and
/// hermeticity, and a commit range starting at a stored artifact or the trusted base. Reviews
/// and content blocks are left to the engine's blockers: they change after the build.
fn verify(
    home: &Home,
    job: &BuildJob,
    spec: &PipelineSpec,
    checked: &Checked,
) -> Result<(), String> {
    let policy = gantry_supply::verify::Policy {
        builder_ids: vec![gantry_supply::build::builder_id(job.role, job.sandbox).to_string()],
        repositories: vec![job.request.source.repository.clone()],
        branch: Some(job.request.source.branch.clone()),
        require_hermetic: !spec.build.network,
        pipeline: Some(job.request.pipeline.clone()),
        review_required: false,
        trusted_bases: job.request.trusted_base.iter().cloned().collect(),
        require_authenticated_authors: false,
    };
    let mut verification =
        Verification::assemble(home, &Trust::default(), policy, Timestamp::now())
            .map_err(|error| error.to_string())?;
    verification.blocks = Default::default();
    match verification.check_stored(&home.store(), &checked.built.artifact) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(failure)) => Err(failure.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// The home's content blocks as the engine matches them (exact commits and package versions
/// present in stored artifacts), when they changed since last handed over.
fn engine_blocklist(controller: &Controller, home: &Home) -> Option<Input> {
    let list = match home.blocks() {
        Ok(list) => list,
        Err(error) => {
            tracing::error!(%error, "the home's block list is unreadable");
            return None;
        }
    };
    let artifacts = home.store().list().unwrap_or_default();
    let mut blocklist = ContentBlocklist::default();
    let pipelines: Vec<String> =
        controller.builds.specs.read().expect("specs lock").keys().cloned().collect();
    for pipeline in pipelines {
        let concrete = list.concrete(&artifacts, &pipeline);
        blocklist.commits.extend(concrete.commits);
        blocklist
            .packages
            .extend(concrete.packages.into_iter().map(|(name, version)| Package { name, version }));
    }
    blocklist.commits.sort();
    blocklist.commits.dedup();
    blocklist.packages.sort();
    blocklist.packages.dedup();
    let mut state = controller.builds.blocks.lock().expect("blocks lock");
    if state.engine.as_ref() == Some(&blocklist) {
        return None;
    }
    state.engine = Some(blocklist.clone());
    Some(Input::ContentBlocklist(blocklist))
}

/// Starts a refresh of the blocks on a blocking thread, unless one runs: hands a changed list
/// to the engine, and republishes the signed list for the boxes when it changed or is due.
fn start_blocks_refresh(controller: &Arc<Controller>) {
    {
        let mut state = controller.builds.blocks.lock().expect("blocks lock");
        if state.running {
            return;
        }
        state.running = true;
    }
    let controller = controller.clone();
    drop(tokio::task::spawn_blocking(move || {
        refresh_blocks(&controller);
        controller.builds.blocks.lock().expect("blocks lock").running = false;
    }));
}

fn refresh_blocks(controller: &Controller) {
    let Some(home) = controller.builds.home() else { return };
    let list = match home.blocks() {
        Ok(list) => list,
        Err(error) => {
            tracing::error!(%error, "the home's block list is unreadable; not republished");
            return;
        }
    };
    let due = {
        let state = controller.builds.blocks.lock().expect("blocks lock");
        state.list.as_ref() != Some(&list)
            || state.published_at.is_none_or(|at| at.elapsed() >= REPUBLISH_INTERVAL)
    };
    if !due {
        return;
    }
    if let Some(input) = engine_blocklist(controller, &home) {
        controller.submit([input]);
    }
    let path = home.published_blocks_path();
    match operations::publish_blocks(
        &home,
        &path,
        Timestamp::now(),
        PUBLISHED_BLOCKS_MAX_AGE.as_secs() as i64,
    ) {
        Ok(published) => {
            tracing::info!(blocks = published.blocks.len(), "block list published");
            let mut state = controller.builds.blocks.lock().expect("blocks lock");
            state.list = Some(list);
            state.published_at = Some(Instant::now());
        }
        Err(error) => tracing::error!(%error, "could not publish the block list"),
    }
}
