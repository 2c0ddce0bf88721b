//! The engine's view of a target's boxes, rebuilt from level-triggered observations.
//!
//! A target's snapshot replaces the engine's list of its boxes: boxes missing from it are gone
//! (scale-in), new ones are added (scale-out). A snapshot older than the last one applied is
//! ignored, so reordered or duplicated messages change nothing.
//!
//! [`BoxState::counts_as_healthy`] is the one definition of capacity the engine and the
//! simulator's checker share: a box is healthy capacity only if its latest observation is fresh,
//! says healthy, and, when the box was commanded, was taken after the command and shows the
//! commanded artifact. Missing, stale or ambiguous observations never count (fail closed).

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::artifact::Digest;
use crate::limits::MAX_OBSERVATION_AGE;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoxId(pub String);

impl fmt::Display for BoxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A command's identity: the epoch of the controller that first issued it and a counter.
/// Agents apply a command id at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommandId(pub u64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Unhealthy,
}

/// How an agent finished the last command it applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub command: CommandId,
    pub succeeded: bool,
    pub detail: String,
}

/// One box as its agent reports it, every round, whole (level-triggered): its health, and for
/// each pipeline that deploys to it, what it runs and how that pipeline's last command ended.
/// A box runs one artifact per pipeline (a service's code, config and OS-patch pipelines deploy
/// to the same boxes); it carries out one command at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxReport {
    pub id: BoxId,
    pub health: Health,
    /// The artifact installed and verified, per pipeline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub running: BTreeMap<String, Digest>,
    /// How the last command of each pipeline ended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_commands: BTreeMap<String, CommandOutcome>,
    /// The command the agent has received and is carrying out, of whichever pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<CommandId>,
    /// When this box's own report was made, if earlier than the snapshot's time: agents report
    /// at their own pace, so one snapshot holds reports of different ages. A box's report says
    /// nothing of a command issued after it; `None` means as of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Timestamp>,
}

impl BoxReport {
    /// The box as one pipeline sees it.
    pub fn for_pipeline(&self, pipeline: &str) -> BoxObservation {
        BoxObservation {
            id: self.id.clone(),
            running: self.running.get(pipeline).cloned(),
            health: self.health,
            last_command: self.last_commands.get(pipeline).cloned(),
            in_progress: self.in_progress,
        }
    }
}

/// One box as one pipeline sees it: [`BoxReport`] with that pipeline's artifact and outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxObservation {
    pub id: BoxId,
    /// The artifact installed and verified on the box, if any.
    pub running: Option<Digest>,
    pub health: Health,
    pub last_command: Option<CommandOutcome>,
    /// The command the agent has received and is carrying out: the engine stops re-sending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<CommandId>,
}

/// Why a box is being moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// A forward deployment of a stage's artifact.
    Deploy,
    /// Back to the target's last known good artifact.
    RollBack,
    /// A box that drifted (added mid-wave, failed earlier) moved to what its target runs.
    Repair,
}

/// A command outstanding on one box.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PendingCommand {
    pub id: CommandId,
    pub kind: CommandKind,
    pub artifact: Digest,
    pub issued_at: Timestamp,
    pub last_sent: Option<Timestamp>,
    /// After this the attempt counts as failed.
    pub deadline: Timestamp,
}

impl Default for BoxObservation {
    /// A box never reported: running nothing known, not healthy (fail closed).
    fn default() -> Self {
        BoxObservation {
            id: BoxId(String::new()),
            running: None,
            health: Health::Unhealthy,
            last_command: None,
            in_progress: None,
        }
    }
}

/// One pipeline's record of one box: its last observation (not stored) and the pipeline's
/// commands to it (stored in the target's record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxState {
    #[serde(skip)]
    pub observation: BoxObservation,
    #[serde(skip)]
    pub observed_at: Timestamp,
    /// Another pipeline has a command outstanding on this box: it is out of service for every
    /// pipeline, and no other pipeline may command it meanwhile. Refreshed before each decision.
    #[serde(skip)]
    pub taken_elsewhere: bool,
    /// Another pipeline's own view does not count this box as healthy capacity (its last
    /// command there is unsettled: not yet observed after it, or the box does not show its
    /// artifact). Capacity is one per box for every pipeline of the service, so it is not
    /// capacity here either. Refreshed before each decision.
    #[serde(skip)]
    pub unsettled_elsewhere: bool,
    pub pending: Option<PendingCommand>,
    /// When the box's last command was issued, pending or finished; observations older than
    /// this say nothing about the result.
    pub last_command_at: Option<Timestamp>,
    pub last_command_artifact: Option<Digest>,
}

impl BoxState {
    /// Whether this box is in service and healthy capacity at `now` (see the module doc).
    pub fn counts_as_healthy(&self, now: Timestamp) -> bool {
        !self.unsettled_elsewhere && self.healthy_here(now)
    }

    /// Whether this pipeline's own commands leave the box healthy capacity: what decides
    /// whether its own command to the box finished, whatever another pipeline's last command
    /// there left unsettled.
    fn healthy_here(&self, now: Timestamp) -> bool {
        !self.taken_elsewhere
            && counts_as_healthy(
                &self.observation,
                self.observed_at,
                self.last_command_at.zip(self.last_command_artifact.as_ref()),
                now,
            )
    }

    /// Whether the box runs `artifact` healthy as far as this pipeline's commands go.
    pub fn healthy_on(&self, artifact: &Digest, now: Timestamp) -> bool {
        self.healthy_here(now) && self.observation.running.as_ref() == Some(artifact)
    }
}

/// The capacity rule, as a free function so the simulator's reference model applies it to its
/// own record of what it delivered and what was commanded.
pub fn counts_as_healthy(
    observation: &BoxObservation,
    observed_at: Timestamp,
    last_command: Option<(Timestamp, &Digest)>,
    now: Timestamp,
) -> bool {
    let fresh = now.duration_since(observed_at) <= SignedDuration::from_secs(MAX_OBSERVATION_AGE);
    let settled = match last_command {
        None => true,
        Some((issued_at, artifact)) => {
            observed_at > issued_at && observation.running.as_ref() == Some(artifact)
        }
    };
    fresh && settled && observation.health == Health::Healthy
}

/// A target's boxes, as one pipeline sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    /// Stored: only the boxes this pipeline ever commanded, with their command state. The rest
    /// come back with the next report.
    #[serde(serialize_with = "commanded_boxes")]
    pub boxes: BTreeMap<BoxId, BoxState>,
    /// When the snapshot in `boxes` was taken. An observation: not stored.
    #[serde(skip)]
    pub observed_at: Option<Timestamp>,
}

fn commanded_boxes<S: serde::Serializer>(
    boxes: &BTreeMap<BoxId, BoxState>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(
        boxes
            .iter()
            .filter(|(_, state)| state.pending.is_some() || state.last_command_at.is_some()),
    )
}

impl Fleet {
    pub fn size(&self) -> u32 {
        self.boxes.len() as u32
    }

    pub fn healthy(&self, now: Timestamp) -> u32 {
        self.boxes.values().filter(|state| state.counts_as_healthy(now)).count() as u32
    }

    pub fn in_flight(&self, kind: CommandKind) -> u32 {
        self.boxes
            .values()
            .filter(|state| state.pending.as_ref().is_some_and(|p| p.kind == kind))
            .count() as u32
    }

    /// Applies a snapshot taken at `observed_at`, each box as of its own report time (never
    /// later than the snapshot's); returns false when it is no newer than the last.
    pub fn apply_snapshot(
        &mut self,
        observed_at: Timestamp,
        boxes: Vec<(BoxObservation, Option<Timestamp>)>,
    ) -> bool {
        if self.observed_at.is_some_and(|last| observed_at <= last) {
            return false;
        }
        self.observed_at = Some(observed_at);
        // Boxes the snapshot lists are updated in place or added; the others are gone.
        let mut listed = std::collections::BTreeSet::new();
        for (observation, at) in boxes {
            let at = at.map_or(observed_at, |at| at.min(observed_at));
            listed.insert(observation.id.clone());
            match self.boxes.get_mut(&observation.id) {
                Some(state) => {
                    // A box's report never goes back in time, whatever order reports came in.
                    if at >= state.observed_at {
                        state.observation = observation;
                        state.observed_at = at;
                    }
                }
                None => {
                    let state = BoxState {
                        observation,
                        observed_at: at,
                        taken_elsewhere: false,
                        unsettled_elsewhere: false,
                        pending: None,
                        last_command_at: None,
                        last_command_artifact: None,
                    };
                    self.boxes.insert(state.observation.id.clone(), state);
                }
            }
        }
        if listed.len() < self.boxes.len() {
            self.boxes.retain(|id, _| listed.contains(id));
        }
        true
    }

    /// Whether any box has reported since this engine started. Observations are not stored, so
    /// a restarted engine knows of a target's boxes only what it commanded them until the
    /// target's first snapshot: unknown, which is neither "runs nothing" nor healthy capacity.
    /// A snapshot lists every box, so once one arrived every box has a real observation.
    pub fn observed(&self) -> bool {
        self.observed_at.is_some()
    }

    /// Whether any box runs `artifact` or has a command pending to install it; before the
    /// first snapshot since a restart, whether any box was last commanded to install it (it may
    /// run it: fail closed).
    pub fn runs(&self, artifact: &Digest) -> bool {
        self.runs_any(|digest| digest == artifact)
    }

    /// Whether any box runs, or is on its way to, an artifact `matches` picks (see
    /// [`Fleet::runs`]).
    pub fn runs_any(&self, matches: impl Fn(&Digest) -> bool) -> bool {
        let observed = self.observed();
        self.boxes.values().any(|state| {
            state.observation.running.as_ref().is_some_and(&matches)
                || state.pending.as_ref().is_some_and(|pending| matches(&pending.artifact))
                || (!observed && state.last_command_artifact.as_ref().is_some_and(&matches))
        })
    }

    /// The artifact every box runs, if all run the same one and there is at least one box.
    pub fn uniform_artifact(&self) -> Option<&Digest> {
        let mut running = self.boxes.values().map(|state| state.observation.running.as_ref());
        let first = running.next()??;
        running.all(|other| other == Some(first)).then_some(first)
    }
}

/// Hashes exactly what is stored of a box: its commands, not its observation.
impl std::hash::Hash for BoxState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.pending.hash(state);
        self.last_command_at.hash(state);
        self.last_command_artifact.hash(state);
    }
}

/// Hashes exactly what is stored of a fleet: the boxes ever commanded.
impl std::hash::Hash for Fleet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for (id, box_state) in &self.boxes {
            if box_state.pending.is_some() || box_state.last_command_at.is_some() {
                id.hash(state);
                box_state.hash(state);
            }
        }
    }
}
