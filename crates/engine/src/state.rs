//! The engine's state: everything it knows. The parts that are decisions are serializable and
//! stored as records (see [`crate::records`]); observations and caches are not.
//!
//! Maps are `BTreeMap`s (deterministic order: the same inputs give the same actions and the
//! same record bytes).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use gantry_model::{Plan, Target};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use gantry_store::RecordKey;

use crate::artifact::{Artifact, ContentBlocklist, Digest};
use crate::blockers::{Blocker, Hold, Override};
use crate::fleet::{BoxId, CommandId, Fleet};
use crate::input::AlarmState;

/// The whole engine state. Create it with [`Engine::new`](crate::Engine::new) or from stored
/// records ([`Engine::from_records`](crate::Engine::from_records)), drive it with
/// [`Engine::step_many`](crate::Engine::step_many), read it through its views.
///
/// In memory each pipeline holds its own view of its targets; stored, the state is split into
/// records ([`crate::records`]): one global, one per pipeline, one per shared target holding
/// every pipeline's part of it, one per plan version. Observations (box reports, alarm
/// readings, data points) are level-triggered and never stored: a restarted engine knows
/// nothing of them until the next reports, and fails closed meanwhile.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The fencing epoch of the controller driving this state.
    pub(crate) epoch: u64,
    /// The last command id handed out. Restored from the store's high-water mark, never from a
    /// record, so issuing a command changes no global record.
    pub(crate) next_command: u64,
    /// IANA time zone per region, from the topology.
    pub(crate) region_zones: BTreeMap<String, String>,
    pub(crate) pipelines: BTreeMap<String, Pipeline>,
    /// Every plan version some pipeline runs or will run, by (pipeline, version).
    pub(crate) plans: BTreeMap<(String, u32), Arc<Plan>>,
    /// Which pipelines deploy to each shared target (service, target). Derived from the plans.
    pub(crate) users: BTreeMap<SharedTarget, BTreeSet<String>>,
    /// Per pipeline, its targets that other pipelines deploy to too. Derived from the plans.
    pub(crate) shared_targets: BTreeMap<String, Vec<Target>>,
    /// Each shared target by its record's key, with the pipelines that deploy to it: what a
    /// target record's hash and bytes are made of, found without building its tuple key.
    /// Derived from the plans; looked up only, so hashed.
    pub(crate) target_keys: HashMap<String, (SharedTarget, BTreeSet<String>)>,
    /// Per pipeline, the record keys of its targets, formatted once per plan change rather
    /// than on every step that concerns it. Derived from the plans.
    pub(crate) target_record_keys: HashMap<String, Vec<RecordKey>>,
    /// Records a step may have deleted (a pipeline removed, a plan replaced): checked, with
    /// the step's other candidates, for whether they still exist.
    pub(crate) maybe_gone: BTreeSet<RecordKey>,
    /// Which pipelines read each alarm. Derived from the plans: an alarm reading concerns those
    /// pipelines only.
    pub(crate) alarm_readers: BTreeMap<String, BTreeSet<String>>,
    /// Latest reading per alarm, then per region (`""` for organisation-wide readings).
    /// An observation: not stored.
    pub(crate) alarms: BTreeMap<String, BTreeMap<String, AlarmReading>>,
    pub(crate) content: ContentBlocklist,
    pub(crate) recent_operator_commands: VecDeque<String>,
    /// Compiled windows and their last verdict per pipeline and region. A cache of a pure
    /// function, so it is not persisted: a restarted engine recomputes it.
    pub(crate) window_cache: WindowCache,
    /// Every pipeline's next wake-up, earliest first, so a step that concerns one pipeline
    /// costs the same with ten thousand. Rebuilt by the first step after a restart, which
    /// decides for every pipeline.
    pub(crate) wakes: BTreeSet<(Timestamp, String)>,
    /// How many readings in `alarms` are ALARM, so a step need not scan them all to know none
    /// is. Counted afresh after a restart.
    pub(crate) firing: Option<usize>,
    /// A hash of each record's bytes as last reported, so a step reports exactly the records
    /// whose bytes changed.
    pub(crate) reported: HashMap<RecordKey, u64>,
    /// Whether steps report changed records; off for what-if computations never stored.
    pub(crate) track_records: bool,
    /// Only ever set through `plant_bug`, which exists only with the `planted-bugs` feature.
    /// Never part of any record.
    pub(crate) planted_bug: Option<crate::PlantedBug>,
}

/// A target as boxes see it: the service whose boxes they are, and where. Every pipeline of the
/// service that deploys to the target deploys to the same boxes.
pub type SharedTarget = (String, Target);

/// The placeholder a pipeline record deserializes with until its plan record is attached.
fn unresolved_plan() -> Arc<Plan> {
    static PLAN: std::sync::OnceLock<Arc<Plan>> = std::sync::OnceLock::new();
    PLAN.get_or_init(|| {
        Arc::new(Plan {
            pipeline: String::new(),
            team: String::new(),
            service: String::new(),
            kind: gantry_model::pipeline::SourceKind::Code,
            sources: Vec::new(),
            build_command: String::new(),
            build_network: false,
            code_review: Default::default(),
            stages: Vec::new(),
            alarm_blockers: Default::default(),
            time_windows: Default::default(),
            limits: Default::default(),
            urgent: Default::default(),
        })
    })
    .clone()
}

/// Per pipeline, then per region.
pub(crate) type WindowCache = BTreeMap<String, BTreeMap<String, WindowCacheEntry>>;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WindowCacheEntry {
    pub compiled: crate::windows::CompiledWindows,
    /// The last verdict, when it was computed and why it is closed; valid until its
    /// `holds_until`.
    pub verdict: Option<(Timestamp, crate::windows::Verdict, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmReading {
    pub state: AlarmState,
    pub observed_at: Timestamp,
}

/// One pipeline's state: its record, plus its part of each shared target (stored in the
/// targets' records) and the plan it runs (stored by version).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// The plan of `plan_version`; stored in its own record.
    #[serde(skip, default = "unresolved_plan")]
    pub plan: Arc<Plan>,
    pub plan_version: u32,
    /// A newer plan version waiting for the artifact in flight to finish on the current one;
    /// the next artifact takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_plan: Option<u32>,
    /// Artifacts by mainline position (refused ones too: their commits are in later ones).
    pub artifacts: BTreeMap<u64, Artifact>,
    /// Artifacts below this position were forgotten (see `MAX_ARTIFACTS_PER_PIPELINE`).
    #[serde(default)]
    pub forgotten_below: u64,
    /// One entry per plan stage, in order.
    pub stages: Vec<StageState>,
    /// This pipeline's part of each of its targets; stored in the targets' shared records.
    #[serde(skip)]
    pub targets: BTreeMap<Target, TargetState>,
    pub holds: Vec<Hold>,
    pub overrides: Vec<Override>,
    pub urgent: Option<Urgent>,
    /// The earliest time this pipeline asked to be woken at its last reconcile. Not persisted:
    /// a restarted engine reconciles every pipeline first.
    #[serde(skip)]
    pub(crate) wake: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Urgent {
    pub artifact: Digest,
    pub approvers: Vec<String>,
    pub since: Timestamp,
}

/// A stage: the artifact it works on now, and the newest one that passed it.
#[derive(Clone, Debug, Default, PartialEq, Hash, Serialize, Deserialize)]
pub struct StageState {
    pub run: Option<StageRun>,
    /// Sequence of the newest artifact that passed this stage: the next stage's candidate.
    pub passed: Option<u64>,
    /// Sequence of the newest artifact that entered this stage; nothing older enters again.
    pub last_entered: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Hash, Serialize, Deserialize)]
pub struct StageRun {
    pub sequence: u64,
    pub artifact: Digest,
    pub entered_at: Timestamp,
    pub approved: bool,
    pub phase: StagePhase,
}

#[derive(Clone, Debug, PartialEq, Hash, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum StagePhase {
    /// Deploying the stage's steps. Each region works through its own steps in order (one zone
    /// or cell at a time) and bakes each; regions run in parallel.
    Rollout { lanes: BTreeMap<String, Lane> },
    /// Running the stage's test gates, once every region has baked its last step.
    Testing { gates: Vec<GateRun> },
    /// Waiting for a person's approval.
    AwaitingApproval,
    /// Rolled back or failed; a newer artifact may enter, or a person retries.
    Failed { reason: String },
}

impl StagePhase {
    /// Whether any target of the stage has started deploying.
    pub fn started(&self) -> bool {
        match self {
            StagePhase::Rollout { lanes } => lanes.values().any(Lane::started),
            StagePhase::Testing { .. } | StagePhase::AwaitingApproval => true,
            StagePhase::Failed { .. } => false,
        }
    }
}

/// One region's way through a stage: the step it is on, that step's target there, and its bake.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lane {
    /// Index of the stage's step this region is on.
    pub step: usize,
    pub target: Target,
    pub phase: TargetPhase,
    /// The blockers last reported for this target, so changes are reported once.
    pub blockers: Vec<Blocker>,
    pub bake_started: Option<Timestamp>,
    /// Whether a wait for missing bake evidence has been reported.
    pub evidence_wait_reported: bool,
    /// Steps this region has baked in the stage.
    pub steps_baked: u32,
    /// Per metric, the first cumulative data-point count seen for the artifact since this
    /// step's own deployment finished: the bake counts only what came after it, never evidence
    /// an earlier step gathered on the same target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence_from: BTreeMap<String, u64>,
}

impl Lane {
    /// The lane at step `step`, not started.
    pub fn at(step: usize, target: Target) -> Lane {
        Lane {
            step,
            target,
            phase: TargetPhase::Waiting,
            blockers: Vec::new(),
            bake_started: None,
            evidence_wait_reported: false,
            steps_baked: 0,
            evidence_from: BTreeMap::new(),
        }
    }

    fn started(&self) -> bool {
        self.steps_baked > 0 || !matches!(self.phase, TargetPhase::Waiting)
    }

    /// Deploying or deployed: the lane's target is exposed to the artifact.
    pub fn active(&self) -> bool {
        matches!(self.phase, TargetPhase::Deploying { .. } | TargetPhase::Deployed { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GateRun {
    pub gate: String,
    pub command: CommandId,
    pub deadline: Timestamp,
    pub passed: Option<bool>,
    /// When the request was last sent; re-sent until answered, like box commands.
    pub last_sent: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum TargetPhase {
    /// Not started: blocked, or waiting for its first fresh observation.
    Waiting,
    Deploying {
        started_at: Timestamp,
        /// Boxes commanded in this deployment.
        attempted: BTreeSet<BoxId>,
        /// Boxes whose attempt failed; CodeDeploy does not retry them.
        failed: BTreeSet<BoxId>,
        /// Since when no box could be taken without crossing the floor.
        stuck_since: Option<Timestamp>,
        /// Whether this stall was reported ([`crate::Event::DeploymentStuck`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stuck_reported: bool,
    },
    Deployed {
        at: Timestamp,
    },
    /// Its last step in the stage deployed and baked.
    Baked {
        at: Timestamp,
    },
    /// Stopped because another target of the stage rolled back or failed.
    Halted,
}

/// One target's boxes and history, shared by every stage that deploys it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    pub fleet: Fleet,
    /// Artifacts that completed a full-target bake here, oldest first.
    pub known_good: Vec<Digest>,
    pub rollback: Option<Rollback>,
    /// Cumulative data points per metric and per artifact that served them (a target mid-way
    /// through a deployment serves two). An observation: not stored.
    #[serde(skip)]
    pub data_points: BTreeMap<String, BTreeMap<Digest, DataPointReading>>,
    /// Boxes whose repair or rollback failed, and when they may be commanded again.
    #[serde(alias = "repair_backoff")]
    pub backoff: BTreeMap<BoxId, Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rollback {
    pub to: Digest,
    pub reason: String,
    pub started_at: Timestamp,
    /// Since when no box has been on its way to `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_since: Option<Timestamp>,
    /// Reported unable to make progress, and why; reported once, cleared when one more box
    /// reaches `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<Stuck>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stuck {
    pub reason: String,
    /// Boxes healthy on the rollback's artifact when it was reported.
    pub boxes_done: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPointReading {
    pub count: u64,
    pub observed_at: Timestamp,
}

/// Hashes exactly what a pipeline's record stores (not its plan, its targets or its wake-up),
/// so a step can tell a changed record without serializing it.
impl std::hash::Hash for Pipeline {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.plan_version.hash(state);
        self.pending_plan.hash(state);
        self.artifacts.hash(state);
        self.forgotten_below.hash(state);
        self.stages.hash(state);
        self.holds.hash(state);
        self.overrides.hash(state);
        self.urgent.hash(state);
    }
}

/// Hashes exactly what a target's record stores of one pipeline's part (not its data points).
impl std::hash::Hash for TargetState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.fleet.hash(state);
        self.known_good.hash(state);
        self.rollback.hash(state);
        self.backoff.hash(state);
    }
}
