//! The engine's state: everything it knows, serializable so the controller can persist it after
//! every step and the simulator can restart the controller by round-tripping it.
//!
//! Maps are `BTreeMap`s (deterministic order: the same inputs give the same actions, byte for
//! byte); maps keyed by a [`Target`] serialize as lists of pairs so the state is valid JSON.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use gantry_model::{Plan, Target};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, ContentBlocklist, Digest};
use crate::blockers::{Blocker, Hold, Override};
use crate::fleet::{BoxId, CommandId, Fleet};
use crate::input::AlarmState;

/// The whole engine state. Create it with [`Engine::new`](crate::Engine::new), drive it with
/// [`Engine::step`](crate::Engine::step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    /// The fencing epoch of the controller driving this state.
    pub epoch: u64,
    pub(crate) next_command: u64,
    /// IANA time zone per region, from the topology.
    pub region_zones: BTreeMap<String, String>,
    pub pipelines: BTreeMap<String, Pipeline>,
    /// Latest reading per alarm, then per region (`""` for organisation-wide readings).
    pub alarms: BTreeMap<String, BTreeMap<String, AlarmReading>>,
    pub content: ContentBlocklist,
    pub(crate) recent_operator_commands: VecDeque<String>,
    /// Compiled windows and their last verdict per pipeline and region. A cache of a pure
    /// function, so it is not persisted: a restarted engine recomputes it.
    #[serde(skip)]
    pub(crate) window_cache: WindowCache,
    /// Every pipeline's next wake-up, earliest first, so a step that concerns one pipeline
    /// costs the same with ten thousand. Rebuilt by the first step after a restart, which
    /// decides for every pipeline.
    #[serde(skip)]
    pub(crate) wakes: BTreeSet<(Timestamp, String)>,
    /// How many readings in `alarms` are ALARM, so a step need not scan them all to know none
    /// is. Counted afresh after a restart.
    #[serde(skip)]
    pub(crate) firing: Option<usize>,
    /// Only ever set through `plant_bug`, which exists only with the `planted-bugs` feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) planted_bug: Option<crate::PlantedBug>,
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

/// One pipeline's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub plan: Arc<Plan>,
    /// Artifacts by mainline position (refused ones too: their commits are in later ones).
    pub artifacts: BTreeMap<u64, Artifact>,
    /// Artifacts below this position were forgotten (see `MAX_ARTIFACTS_PER_PIPELINE`).
    #[serde(default)]
    pub forgotten_below: u64,
    /// One entry per plan stage, in order.
    pub stages: Vec<StageState>,
    #[serde(with = "pairs")]
    pub targets: BTreeMap<Target, TargetState>,
    pub holds: Vec<Hold>,
    pub overrides: Vec<Override>,
    pub urgent: Option<Urgent>,
    /// The earliest time this pipeline asked to be woken at its last reconcile. Not persisted:
    /// a restarted engine reconciles every pipeline first.
    #[serde(skip)]
    pub(crate) wake: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Urgent {
    pub artifact: Digest,
    pub approvers: Vec<String>,
    pub since: Timestamp,
}

/// A stage: the artifact it works on now, and the newest one that passed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    pub run: Option<StageRun>,
    /// Sequence of the newest artifact that passed this stage: the next stage's candidate.
    pub passed: Option<u64>,
    /// Sequence of the newest artifact that entered this stage; nothing older enters again.
    pub last_entered: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    pub sequence: u64,
    pub artifact: Digest,
    pub entered_at: Timestamp,
    pub approved: bool,
    pub phase: StagePhase,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRun {
    pub gate: String,
    pub command: CommandId,
    pub deadline: Timestamp,
    pub passed: Option<bool>,
    /// When the request was last sent; re-sent until answered, like box commands.
    pub last_sent: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// through a deployment serves two).
    pub data_points: BTreeMap<String, BTreeMap<Digest, DataPointReading>>,
    /// Boxes whose repair or rollback failed, and when they may be commanded again.
    #[serde(alias = "repair_backoff")]
    pub backoff: BTreeMap<BoxId, Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub to: Digest,
    pub reason: String,
    pub started_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPointReading {
    pub count: u64,
    pub observed_at: Timestamp,
}

/// Serializes a map with non-string keys as a list of `[key, value]` pairs.
pub(crate) mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?.into_iter().collect())
    }
}
