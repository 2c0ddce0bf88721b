//! The agent's one boundary to the controller: a narrow trait over the wire types of
//! `gantry_model::agent`, with an in-memory controller for tests (able to drop calls, re-send
//! commands and speak with a stale epoch).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_model::Digest;
use gantry_model::agent::{
    Acknowledge, Acknowledged, AgentCommand, BoxId, CommandBatch, Register, Registered, Report,
    ReportAccepted,
};

use crate::verify::Artifact;

/// Why a call to the controller did not go through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The controller could not be reached or answered 5xx: try again after a backoff.
    #[error("the controller is unavailable: {0}")]
    Unavailable(String),
    /// The controller does not know this box (401/404): register again.
    #[error("the controller does not know this box: {0}")]
    Unregistered(String),
    /// The controller refused the request (other 4xx); retrying the same request will not help.
    #[error("the controller refused the request: {0}")]
    Refused(String),
}

/// What the agent asks of the controller. Every call may fail; the agent retries with backoff.
pub trait Controller {
    fn register(&mut self, register: &Register) -> Result<Registered, TransportError>;
    /// Long-polls for the box's outstanding commands, waiting at most `wait`.
    fn poll(&mut self, box_id: &BoxId, wait: Duration) -> Result<CommandBatch, TransportError>;
    fn acknowledge(
        &mut self,
        box_id: &BoxId,
        acknowledge: &Acknowledge,
    ) -> Result<Acknowledged, TransportError>;
    fn report(&mut self, box_id: &BoxId, report: &Report)
    -> Result<ReportAccepted, TransportError>;
    /// Downloads the artifact a command names: the package and its attestation and manifest.
    fn download(&mut self, command: &AgentCommand) -> Result<Artifact, TransportError>;
    /// The build keys' trust list as the trust root signed it (a DSSE envelope), for a box whose
    /// trust takes its lists from the controller. The box verifies it with its own root.
    fn trust_list(&mut self) -> Result<Vec<u8>, TransportError> {
        Err(TransportError::Refused("this controller serves no trust list".into()))
    }
    /// The published content block list as the trust root signed it (a DSSE envelope).
    fn block_list(&mut self) -> Result<Vec<u8>, TransportError> {
        Err(TransportError::Refused("this controller serves no block list".into()))
    }
}

/// What an in-memory controller has seen and will send, shared with the test that drives it.
#[derive(Default)]
pub struct MemoryWorld {
    pub epoch: u64,
    /// Batches delivered one per poll, in order; an empty poll when none is left.
    pub batches: VecDeque<Vec<AgentCommand>>,
    pub artifacts: BTreeMap<Digest, Artifact>,
    /// Calls to fail with `Unavailable` before answering again (a controller outage).
    pub unavailable_calls: u32,
    pub registrations: Vec<Register>,
    pub acknowledgements: Vec<Acknowledge>,
    pub reports: Vec<Report>,
    /// Downloads asked for, by artifact.
    pub downloads: Vec<Digest>,
    pub failed_calls: u32,
}

/// An in-memory controller over a shared [`MemoryWorld`].
#[derive(Clone, Default)]
pub struct MemoryController {
    pub world: Arc<Mutex<MemoryWorld>>,
}

impl MemoryController {
    fn call<T>(&self, answer: impl FnOnce(&mut MemoryWorld) -> T) -> Result<T, TransportError> {
        let mut world = self.world.lock().expect("not poisoned");
        if world.unavailable_calls > 0 {
            world.unavailable_calls -= 1;
            world.failed_calls += 1;
            return Err(TransportError::Unavailable("connection refused".into()));
        }
        Ok(answer(&mut world))
    }
}

impl Controller for MemoryController {
    fn register(&mut self, register: &Register) -> Result<Registered, TransportError> {
        self.call(|world| {
            world.registrations.push(register.clone());
            Registered {
                epoch: world.epoch,
                report_interval: gantry_model::Duration::from_seconds(10),
                max_long_poll: gantry_model::Duration::from_seconds(1),
                server_time: gantry_model::Timestamp::now(),
            }
        })
    }

    fn poll(&mut self, _box_id: &BoxId, _wait: Duration) -> Result<CommandBatch, TransportError> {
        self.call(|world| CommandBatch {
            epoch: world.epoch,
            commands: world.batches.pop_front().unwrap_or_default(),
        })
    }

    fn acknowledge(
        &mut self,
        _box_id: &BoxId,
        acknowledge: &Acknowledge,
    ) -> Result<Acknowledged, TransportError> {
        self.call(|world| {
            world.acknowledgements.push(acknowledge.clone());
            Acknowledged { outstanding: true }
        })
    }

    fn report(
        &mut self,
        _box_id: &BoxId,
        report: &Report,
    ) -> Result<ReportAccepted, TransportError> {
        self.call(|world| {
            world.reports.push(report.clone());
            ReportAccepted { epoch: world.epoch }
        })
    }

    fn download(&mut self, command: &AgentCommand) -> Result<Artifact, TransportError> {
        self.call(|world| {
            world.downloads.push(command.artifact);
            world.artifacts.get(&command.artifact).cloned()
        })?
        .ok_or_else(|| TransportError::Refused(format!("no artifact {}", command.artifact)))
    }
}
