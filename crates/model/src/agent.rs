//! The wire between a host agent and the controller: what each side sends, as JSON.
//!
//! The agent pulls; the controller never connects to a box. One agent serves one box, which may
//! run one artifact per pipeline (a service's code, config and OS-patch pipelines share boxes).
//! The exchange, all under `/api/v1/agent` and authenticated with the box's own token in
//! `Authorization: Bearer <token>` (never in a body; a token acts for its own box only):
//!
//! 1. [`Register`] once at start and after any `401`/`404` on its box: names the box, its target
//!    and the highest controller epoch the agent has seen. The answer is [`Registered`].
//! 2. Long-poll for [`CommandBatch`]es. Every [`AgentCommand`] carries its [`CommandId`] and the
//!    controller's epoch. The agent keeps the highest epoch it has seen (on disk) and refuses a
//!    command with a lower one; it applies a command id at most once, and answers a command it
//!    already finished with that command's outcome in its next report instead of acting again.
//! 3. [`Acknowledge`] a command when it starts carrying it out, so the controller stops
//!    re-sending it.
//! 4. [`Report`] the box's whole observed state — every pipeline's running artifact, the command
//!    in progress, the outcomes of the commands it finished, health — periodically and after
//!    every change. Reports are level-triggered: a lost one heals on the next.
//!
//! These types are the contract between separately deployed binaries: fields are only ever
//! added, with `#[serde(default)]`, never renamed or removed. [`PROTOCOL_VERSION`] changes when
//! an old agent could misread a new controller.
//!
//! They mirror the engine's `BoxObservation` and box-command action (`gantry-engine`'s `fleet`
//! and `action` modules); the controller converts between the two.

use std::fmt;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Digest, Duration, Target};

/// The version of this protocol. A controller refuses a [`Register`] with a different one.
pub const PROTOCOL_VERSION: u32 = 1;

/// The most command outcomes one [`PipelineObservation`] carries: the newest ones, enough to cover
/// every command the controller can have outstanding on a box for one pipeline across a few
/// re-sends, small enough that a report of a box with many pipelines stays a few kilobytes.
pub const MAX_REPORTED_OUTCOMES: usize = 16;

/// The most bytes of an outcome's `detail` (a failing hook's last lines): enough to say why,
/// bounded so a chatty hook cannot bloat every report.
pub const MAX_OUTCOME_DETAIL_BYTES: usize = 4096;

/// A box's name, unique in the organisation (a hostname, an instance id).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct BoxId(pub String);

impl fmt::Display for BoxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A command's identity, never reused by a controller across restarts and restores.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct CommandId(pub u64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// `POST /api/v1/agent/boxes/{box}/register`: the agent introduces its box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Must equal [`PROTOCOL_VERSION`] of the controller.
    pub protocol_version: u32,
    /// The box; must be the box the bearer token was issued for.
    pub box_id: BoxId,
    /// Where the box serves: environment (`prod` or a pre-production environment), region, and
    /// its availability zone or cell. Must match the box's place in the topology.
    pub target: Target,
    /// The highest controller epoch the agent has ever seen (0 if none). A controller started
    /// from an old backup moves its own epoch past this before it issues anything.
    pub highest_epoch_seen: u64,
    /// The highest command id the agent has ever received (0 if none). A controller restored
    /// from an old backup issues only ids above every one an agent has seen.
    #[serde(default)]
    pub highest_command_id_seen: u64,
    /// The agent's version, for the boxes list; free text such as `gantry 0.1.0`.
    #[serde(default)]
    pub agent_version: String,
    /// The box's service's Prometheus `/metrics` endpoint, such as
    /// `http://10.0.3.7:8080/metrics`, which the controller scrapes for the pipeline's alarms
    /// and bake data points. Absent: the box's metrics come from elsewhere (an external
    /// Prometheus) or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
}

/// The controller's answer to [`Register`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Registered {
    /// The controller's current epoch; every command it issues carries it or a later one.
    pub epoch: u64,
    /// How often the agent should send a [`Report`] when nothing changes.
    pub report_interval: Duration,
    /// The longest a command long-poll may wait; ask for at most this.
    pub max_long_poll: Duration,
    /// The controller's clock at the answer, so an agent can log its own skew.
    pub server_time: Timestamp,
}

/// Why a box is being moved. The agent does the same thing for each (verify, install, run the
/// hooks, check health); the kind is for its log, its hooks' environment and people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// A forward deployment of a stage's artifact.
    Deploy,
    /// Back to the target's last known good artifact.
    RollBack,
    /// A box that drifted (added mid-wave, failed earlier) moved to what its target runs.
    Repair,
}

/// One thing for one box to do: install `artifact` for `pipeline`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentCommand {
    /// Apply at most once; report its outcome under this id.
    pub id: CommandId,
    /// The epoch of the controller that sent it. Refuse it if lower than the highest seen.
    pub epoch: u64,
    /// The pipeline whose artifact slot on the box this command changes.
    pub pipeline: String,
    /// The target the box belongs to, as the controller knows it.
    pub target: Target,
    /// The box this command is for (always the box the token belongs to).
    pub box_id: BoxId,
    pub kind: CommandKind,
    /// The artifact to install; verify its digest and signature before anything runs.
    pub artifact: Digest,
    /// Where to download the artifact: a path on the controller, such as
    /// `/api/v1/agent/artifacts/sha256:…`, fetched with the same token.
    pub download_path: String,
    /// How long one lifecycle hook may run before the attempt fails.
    pub hook_timeout: Duration,
    /// How long the box may take to report healthy after install before the attempt fails.
    pub health_check_timeout: Duration,
    /// The pipeline's health check, if its plan defines one; otherwise the artifact's own
    /// `ValidateService` hook decides health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// After this the controller counts the attempt as failed, whatever the agent does.
    pub deadline: Timestamp,
}

/// An HTTP health check the agent runs against the box after install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Port on the box's loopback interface.
    pub port: u16,
    /// Path requested with GET, such as `/health`.
    pub path: String,
    /// How many consecutive 2xx answers count as healthy.
    pub healthy_threshold: u32,
    /// Time between two probes.
    pub interval: Duration,
}

/// `GET /api/v1/agent/boxes/{box}/commands`: what the box should do now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandBatch {
    /// The controller's current epoch.
    pub epoch: u64,
    /// Every command outstanding for the box, oldest first; empty when the long-poll timed out.
    /// A command already acknowledged may appear again (the controller re-sends on evidence);
    /// the agent answers it from its record of command ids.
    pub commands: Vec<AgentCommand>,
}

/// `POST /api/v1/agent/boxes/{box}/acknowledge`: the agent has started carrying out a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Acknowledge {
    pub command: CommandId,
    /// The epoch the command carried.
    pub epoch: u64,
}

/// The controller's answer to [`Acknowledge`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Acknowledged {
    /// False when the controller no longer knows the command as outstanding (it finished, was
    /// superseded, or the box reported its outcome already); the agent carries on either way and
    /// reports what it did.
    pub outstanding: bool,
}

/// Whether a box passes its health check for one pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    /// Failing, not yet checked, or unknown: never counts as capacity.
    Unhealthy,
}

/// How the agent finished one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandOutcome {
    pub command: CommandId,
    /// The epoch the command carried.
    pub epoch: u64,
    pub succeeded: bool,
    /// Why it failed (the failing hook and its last output), or a short note; at most
    /// [`MAX_OUTCOME_DETAIL_BYTES`].
    #[serde(default)]
    pub detail: String,
    /// The agent's clock when it finished.
    pub finished_at: Timestamp,
}

/// One pipeline's slot on a box, as the agent sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineObservation {
    pub pipeline: String,
    /// The artifact installed and verified for this pipeline, if any.
    pub running: Option<Digest>,
    pub health: Health,
    /// The command the agent has received and is carrying out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<CommandId>,
    /// The newest finished commands for this pipeline, oldest first; at most
    /// [`MAX_REPORTED_OUTCOMES`]. The last one is the box's latest outcome.
    #[serde(default)]
    pub outcomes: Vec<CommandOutcome>,
}

/// `POST /api/v1/agent/boxes/{box}/report`: everything the agent observes on its box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The agent's clock when it took the observation. A report from the future counts as made
    /// when the controller receives it.
    pub observed_at: Timestamp,
    /// The highest controller epoch the agent has seen.
    pub highest_epoch_seen: u64,
    /// The highest command id the agent has ever received.
    #[serde(default)]
    pub highest_command_id_seen: u64,
    /// One entry per pipeline that has ever installed on the box; pipelines not listed run
    /// nothing there.
    pub pipelines: Vec<PipelineObservation>,
}

/// The controller's answer to [`Report`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportAccepted {
    /// The controller's current epoch.
    pub epoch: u64,
}

/// The body of every `4xx` and `5xx` answer of the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// What was wrong and what to do, in a sentence.
    pub error: String,
    /// The request field at fault, as a path such as `pipelines[0].running` or `query.wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"artifact")
    }

    fn target() -> Target {
        Target {
            environment: "prod".into(),
            region: "eu-west-1".into(),
            zone: Some("eu-west-1a".into()),
            cell: None,
        }
    }

    /// The wire form is what agents built from other versions read: pin it.
    fn check<T>(value: T, expected: serde_json::Value)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug,
    {
        let json = serde_json::to_value(&value).unwrap();
        assert_eq!(json, expected);
        let back: T = serde_json::from_value(json).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn an_agent_older_than_metrics_urls_still_registers() {
        let register: Register = serde_json::from_value(serde_json::json!({
            "protocol_version": 1,
            "box_id": "i-0a",
            "target": {"environment": "prod", "region": "eu-west-1", "zone": "eu-west-1a"},
            "highest_epoch_seen": 7,
        }))
        .unwrap();
        assert_eq!(register.metrics_url, None);
    }

    #[test]
    fn wire_forms_are_pinned() {
        let at: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        check(
            Register {
                protocol_version: 1,
                box_id: BoxId("i-0a".into()),
                target: target(),
                highest_epoch_seen: 7,
                highest_command_id_seen: 40,
                agent_version: "gantry 0.1.0".into(),
                metrics_url: Some("http://127.0.0.1:8080/metrics".into()),
            },
            serde_json::json!({
                "protocol_version": 1,
                "box_id": "i-0a",
                "target": {"environment": "prod", "region": "eu-west-1", "zone": "eu-west-1a"},
                "highest_epoch_seen": 7,
                "highest_command_id_seen": 40,
                "agent_version": "gantry 0.1.0",
                "metrics_url": "http://127.0.0.1:8080/metrics",
            }),
        );
        check(
            AgentCommand {
                id: CommandId(12),
                epoch: 3,
                pipeline: "checkout-api-code".into(),
                target: target(),
                box_id: BoxId("i-0a".into()),
                kind: CommandKind::RollBack,
                artifact: digest(),
                download_path: format!("/api/v1/agent/artifacts/{}", digest()),
                hook_timeout: Duration::from_minutes(10),
                health_check_timeout: Duration::from_minutes(5),
                health_check: None,
                deadline: at,
            },
            serde_json::json!({
                "id": 12,
                "epoch": 3,
                "pipeline": "checkout-api-code",
                "target": {"environment": "prod", "region": "eu-west-1", "zone": "eu-west-1a"},
                "box_id": "i-0a",
                "kind": "roll_back",
                "artifact": digest().to_string(),
                "download_path": format!("/api/v1/agent/artifacts/{}", digest()),
                "hook_timeout": "10m",
                "health_check_timeout": "5m",
                "deadline": "2026-12-01T10:00:00Z",
            }),
        );
        check(
            Report {
                observed_at: at,
                highest_epoch_seen: 3,
                highest_command_id_seen: 12,
                pipelines: vec![PipelineObservation {
                    pipeline: "checkout-api-code".into(),
                    running: Some(digest()),
                    health: Health::Healthy,
                    in_progress: None,
                    outcomes: vec![CommandOutcome {
                        command: CommandId(12),
                        epoch: 3,
                        succeeded: true,
                        detail: String::new(),
                        finished_at: at,
                    }],
                }],
            },
            serde_json::json!({
                "observed_at": "2026-12-01T10:00:00Z",
                "highest_epoch_seen": 3,
                "highest_command_id_seen": 12,
                "pipelines": [{
                    "pipeline": "checkout-api-code",
                    "running": digest().to_string(),
                    "health": "healthy",
                    "outcomes": [{
                        "command": 12, "epoch": 3, "succeeded": true, "detail": "",
                        "finished_at": "2026-12-01T10:00:00Z",
                    }],
                }],
            }),
        );
    }

    #[test]
    fn registration_refuses_unknown_fields() {
        let error = serde_json::from_value::<Register>(serde_json::json!({
            "protocol_version": 1, "box_id": "b", "highest_epoch_seen": 0,
            "target": {"environment": "prod", "region": "r"}, "token": "secret",
        }))
        .unwrap_err();
        assert!(error.to_string().contains("unknown field `token`"), "{error}");
    }
}
