//! What the agent remembers across its own restarts, in one file replaced atomically
//! (`ROOT/agent-state.json`): the highest controller epoch and command id it has seen, what each
//! pipeline runs, the command it is carrying out and how far it got, and the outcome of every
//! command it finished (the newest [`MAX_REMEMBERED_OUTCOMES`]).
//!
//! The state is written before the agent acts on a command (so a restart knows what it was
//! doing) and again when the command ends (outcome, running artifact and cleared progress in one
//! write), so a command is never carried out twice and never forgotten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry_model::agent::{AgentCommand, CommandId, CommandOutcome, Health};
use gantry_model::{Digest, Timestamp};
use serde::{Deserialize, Serialize};

use crate::appspec::LifecycleEvent;
use crate::{Error, write_json_atomically};

/// Outcomes kept for answering re-delivered commands. The controller re-sends only commands it
/// still has outstanding — a handful per box — so a thousand covers any re-delivery by far; a
/// command older than every remembered one is refused rather than carried out again.
pub const MAX_REMEMBERED_OUTCOMES: usize = 1024;
/// The state file's name under the agent's root.
pub const STATE_FILE: &str = "agent-state.json";

/// One pipeline's slot on the box.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineState {
    /// The artifact whose lifecycle last completed here.
    pub running: Option<Digest>,
    /// Healthy only after a whole lifecycle (and health check) succeeded.
    pub healthy: bool,
    /// The pipeline's health check, probed again before every report, so a box whose service
    /// dies later is reported unhealthy.
    #[serde(default)]
    pub health_check: Option<crate::health::HealthProbe>,
}

/// The command being carried out, and the last lifecycle event it finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    pub command: AgentCommand,
    pub started_at: Timestamp,
    #[serde(default)]
    pub last_event: Option<LifecycleEvent>,
}

/// Everything the agent persists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub highest_epoch_seen: u64,
    pub highest_command_id_seen: u64,
    pub pipelines: BTreeMap<String, PipelineState>,
    pub in_progress: Option<InProgress>,
    /// Finished commands by id, with the pipeline each was for.
    pub outcomes: BTreeMap<CommandId, (String, CommandOutcome)>,
}

impl AgentState {
    pub fn path(root: &Path) -> PathBuf {
        root.join(STATE_FILE)
    }

    /// Reads the state, or a fresh one on a box that never ran an agent.
    pub fn load(root: &Path) -> Result<AgentState, Error> {
        let path = AgentState::path(root);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Invalid(format!(
                    "{}: the agent's state is unreadable ({e}); it is replaced atomically, so this is corruption or a newer agent's format",
                    path.display()
                ))
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(error) => Err(Error::io(&path, error)),
        }
    }

    pub fn save(&self, root: &Path) -> Result<(), Error> {
        write_json_atomically(&AgentState::path(root), self)
    }

    /// Takes note of an epoch the controller showed; never lowers it.
    pub fn saw_epoch(&mut self, epoch: u64) -> bool {
        let raised = epoch > self.highest_epoch_seen;
        self.highest_epoch_seen = self.highest_epoch_seen.max(epoch);
        raised
    }

    /// Records a finished command, forgetting the oldest beyond the bound.
    pub fn finish(&mut self, pipeline: &str, outcome: CommandOutcome) {
        self.outcomes.insert(outcome.command, (pipeline.to_string(), outcome));
        while self.outcomes.len() > MAX_REMEMBERED_OUTCOMES {
            self.outcomes.pop_first();
        }
    }

    /// The oldest command id still remembered; anything older may have been carried out.
    pub fn oldest_remembered(&self) -> Option<CommandId> {
        self.outcomes.keys().next().copied()
    }

    pub fn health(&self, pipeline: &str) -> Health {
        match self.pipelines.get(pipeline) {
            Some(state) if state.healthy => Health::Healthy,
            _ => Health::Unhealthy,
        }
    }
}
