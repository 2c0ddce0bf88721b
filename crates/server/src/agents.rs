//! What the controller knows of each box between rounds: its registration, the latest whole-box
//! report, and the committed commands waiting for its long-poll.
//!
//! Nothing here is durable, and nothing needs to be: reports are level-triggered (the next one
//! heals a lost one), and the commands come from the store's outbox, which the controller reads
//! back on start. A command stays queued for its box until the agent acknowledges it or reports
//! it in progress or done, so a long-poll answer lost on the way is simply answered again under
//! the same id; agents apply an id at most once.

use std::collections::{BTreeMap, BTreeSet};

use gantry_model::agent::{
    AgentCommand, BoxId, CommandId, MAX_OUTCOME_DETAIL_BYTES, MAX_REPORTED_OUTCOMES, Register,
    Report,
};
use gantry_model::{Target, Timestamp};

/// The most pipelines one report may list: a box runs one artifact per pipeline that deploys to
/// it, and a service has a handful; a thousand is a malformed or hostile report.
pub const MAX_PIPELINES_PER_REPORT: usize = 1000;

/// A request field that is wrong, and why: the API answers it as a 4xx naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), reason: reason.into() }
    }
}

/// One box as the controller knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct BoxRecord {
    pub box_id: BoxId,
    /// The service whose pipelines deploy to the box (from its agent token).
    pub service: String,
    pub target: Target,
    pub agent_version: String,
    /// The box's service's `/metrics` endpoint the controller scrapes, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    pub registered_at: Timestamp,
    /// When the controller received the latest report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<Timestamp>,
    /// The latest report, whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    pub highest_epoch_seen: u64,
    pub highest_command_id_seen: u64,
}

/// Every registered box and its queue of commands.
#[derive(Debug, Default)]
pub struct Agents {
    boxes: BTreeMap<BoxId, BoxRecord>,
    queues: BTreeMap<BoxId, BTreeMap<CommandId, AgentCommand>>,
}

impl Agents {
    /// Records a registration; returns the highest epoch and command id the agent has seen.
    pub fn register(&mut self, register: Register, service: &str, now: Timestamp) -> (u64, u64) {
        let seen = (register.highest_epoch_seen, register.highest_command_id_seen);
        let record = self.boxes.entry(register.box_id.clone()).or_insert_with(|| BoxRecord {
            box_id: register.box_id.clone(),
            service: service.to_string(),
            target: register.target.clone(),
            agent_version: String::new(),
            metrics_url: None,
            registered_at: now,
            reported_at: None,
            report: None,
            highest_epoch_seen: 0,
            highest_command_id_seen: 0,
        });
        record.service = service.to_string();
        record.target = register.target;
        record.agent_version = register.agent_version;
        record.metrics_url = register.metrics_url;
        record.registered_at = now;
        record.highest_epoch_seen = record.highest_epoch_seen.max(seen.0);
        record.highest_command_id_seen = record.highest_command_id_seen.max(seen.1);
        seen
    }

    pub fn get(&self, box_id: &BoxId) -> Option<&BoxRecord> {
        self.boxes.get(box_id)
    }

    pub fn boxes(&self) -> impl Iterator<Item = &BoxRecord> {
        self.boxes.values()
    }

    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// Queues a committed command for its box (replacing an earlier copy with the same id, as a
    /// re-send under a newer epoch does).
    pub fn queue(&mut self, command: AgentCommand) {
        self.queues.entry(command.box_id.clone()).or_default().insert(command.id, command);
    }

    /// The commands waiting for `box_id`, oldest first.
    pub fn waiting(&self, box_id: &BoxId) -> Vec<AgentCommand> {
        self.queues.get(box_id).map(|queue| queue.values().cloned().collect()).unwrap_or_default()
    }

    /// How many commands wait, over every box.
    pub fn depth(&self) -> usize {
        self.queues.values().map(BTreeMap::len).sum()
    }

    /// The agent started `command`: it leaves the queue. Returns whether it was queued.
    pub fn acknowledge(&mut self, box_id: &BoxId, command: CommandId) -> bool {
        self.queues.get_mut(box_id).is_some_and(|queue| queue.remove(&command).is_some())
    }

    /// Checks and records a report; commands it shows in progress or done leave the queue.
    /// Returns the highest epoch and command id the agent has seen.
    pub fn report(
        &mut self,
        box_id: &BoxId,
        report: Report,
        now: Timestamp,
    ) -> Result<(u64, u64), FieldError> {
        check_report(&report)?;
        let Some(record) = self.boxes.get_mut(box_id) else {
            return Err(FieldError::new("path.box", "this box has not registered; register first"));
        };
        let mut settled = BTreeSet::new();
        for pipeline in &report.pipelines {
            settled.extend(pipeline.in_progress);
            settled.extend(pipeline.outcomes.iter().map(|outcome| outcome.command));
        }
        if let Some(queue) = self.queues.get_mut(box_id) {
            queue.retain(|id, _| !settled.contains(id));
        }
        let seen = (report.highest_epoch_seen, report.highest_command_id_seen);
        record.highest_epoch_seen = record.highest_epoch_seen.max(seen.0);
        record.highest_command_id_seen = record.highest_command_id_seen.max(seen.1);
        record.reported_at = Some(now);
        record.report = Some(report);
        Ok(seen)
    }
}

/// The largest epoch or command id an agent may report: 2^53, the largest integer every JSON
/// reader keeps exact. A controller hands out a few a second; a larger one is forged, and
/// moving past it would leave no ids.
pub const MAX_REPORTED_ID: u64 = 1 << 53;

fn check_seen(field: &str, value: u64) -> Result<(), FieldError> {
    if value > MAX_REPORTED_ID {
        return Err(FieldError::new(field, format!("at most {MAX_REPORTED_ID}")));
    }
    Ok(())
}

/// The limits and shape rules serde cannot express, each naming the field at fault.
pub fn check_report(report: &Report) -> Result<(), FieldError> {
    check_seen("highest_epoch_seen", report.highest_epoch_seen)?;
    check_seen("highest_command_id_seen", report.highest_command_id_seen)?;
    if report.pipelines.len() > MAX_PIPELINES_PER_REPORT {
        return Err(FieldError::new(
            "pipelines",
            format!("at most {MAX_PIPELINES_PER_REPORT} pipelines per report"),
        ));
    }
    let mut names = BTreeSet::new();
    for (index, pipeline) in report.pipelines.iter().enumerate() {
        let field = |name: &str| format!("pipelines[{index}].{name}");
        if pipeline.pipeline.is_empty() {
            return Err(FieldError::new(field("pipeline"), "must not be empty"));
        }
        if !names.insert(pipeline.pipeline.as_str()) {
            return Err(FieldError::new(
                field("pipeline"),
                format!(
                    "{:?} is listed twice; a box runs one artifact per pipeline",
                    pipeline.pipeline
                ),
            ));
        }
        if pipeline.outcomes.len() > MAX_REPORTED_OUTCOMES {
            return Err(FieldError::new(
                field("outcomes"),
                format!("at most {MAX_REPORTED_OUTCOMES} outcomes, the newest"),
            ));
        }
        for (at, outcome) in pipeline.outcomes.iter().enumerate() {
            if outcome.detail.len() > MAX_OUTCOME_DETAIL_BYTES {
                return Err(FieldError::new(
                    format!("pipelines[{index}].outcomes[{at}].detail"),
                    format!("at most {MAX_OUTCOME_DETAIL_BYTES} bytes"),
                ));
            }
        }
    }
    Ok(())
}

/// The limits of a registration serde cannot express.
pub fn check_register(register: &Register) -> Result<(), FieldError> {
    if register.protocol_version != gantry_model::agent::PROTOCOL_VERSION {
        return Err(FieldError::new(
            "protocol_version",
            format!(
                "this controller speaks protocol {}; upgrade the agent or the controller",
                gantry_model::agent::PROTOCOL_VERSION
            ),
        ));
    }
    check_seen("highest_epoch_seen", register.highest_epoch_seen)?;
    check_seen("highest_command_id_seen", register.highest_command_id_seen)?;
    if register.box_id.0.is_empty() {
        return Err(FieldError::new("box_id", "must not be empty"));
    }
    if register.target.environment.is_empty() {
        return Err(FieldError::new("target.environment", "must not be empty"));
    }
    if register.target.region.is_empty() {
        return Err(FieldError::new("target.region", "must not be empty"));
    }
    if let Some(url) = &register.metrics_url {
        crate::alarms::check_metrics_url(url)
            .map_err(|reason| FieldError::new("metrics_url", reason))?;
    }
    Ok(())
}
