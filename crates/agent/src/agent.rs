//! The agent's loop: register, long-poll, decide what each command means for this box, carry it
//! out, report the box's whole state — surviving its own restarts and controller outages.
//!
//! [`decide`] is the one place that says what a command means: refused for a stale epoch,
//! answered from the record when already finished, carried out otherwise. A command interrupted
//! by an agent restart is failed on start, as CodeDeploy's agent does since 1.5 (its hooks may
//! have been killed with it); the controller then repairs or rolls back the box under a new
//! command id, so the box converges.
//!
//! The box keeps serving while the controller is away: nothing here stops the service; the
//! agent retries with a bounded exponential backoff.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gantry_model::Timestamp;
use gantry_model::agent::{
    Acknowledge, AgentCommand, BoxId, CommandOutcome, Health, MAX_OUTCOME_DETAIL_BYTES,
    MAX_REPORTED_OUTCOMES, PROTOCOL_VERSION, PipelineObservation, Register, Report,
};
use gantry_model::plan::Target;

use crate::Error;
use crate::controller::{Controller, TransportError};
use crate::deploy::{self, DeployRequest};
use crate::health::HealthProbe;
use crate::lifecycle::{PipelineDirectory, Traffic};
use crate::state::{AgentState, InProgress};
use crate::verify::TrustRoot;

/// The first wait after a failed call to the controller.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between attempts: an outage of any length is noticed within this once the
/// controller is back, and a thousand agents retrying do not hammer a recovering controller.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The long-poll asked for when the controller names no maximum.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(20);

/// Who this agent is.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The agent's directory: state file and one directory per pipeline.
    pub root: PathBuf,
    pub box_id: BoxId,
    pub target: Target,
    /// Added to every hook's environment (see `HookEnvironment::box_variables`).
    pub box_variables: std::collections::BTreeMap<String, String>,
    /// The box's service's `/metrics` endpoint, told to the controller at registration so it
    /// can scrape the box for alarms and bake data points.
    pub metrics_url: Option<String>,
}

/// What a command means for this box now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Carry it out.
    Carry,
    /// Its epoch is older than one already seen: a deposed controller sent it.
    StaleEpoch { highest_seen: u64 },
    /// Already finished: the next report carries its outcome.
    AlreadyDone,
    /// Older than every remembered outcome: it may have been carried out, so it is not again.
    Forgotten,
    /// Meant for another box.
    NotThisBox,
}

/// Decides what `command` means given what the agent remembers.
pub fn decide(state: &AgentState, box_id: &BoxId, command: &AgentCommand) -> Decision {
    if command.epoch < state.highest_epoch_seen {
        return Decision::StaleEpoch { highest_seen: state.highest_epoch_seen };
    }
    if &command.box_id != box_id {
        return Decision::NotThisBox;
    }
    if state.outcomes.contains_key(&command.id) {
        return Decision::AlreadyDone;
    }
    if state.oldest_remembered().is_some_and(|oldest| command.id < oldest) {
        return Decision::Forgotten;
    }
    Decision::Carry
}

/// What one round did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Round {
    /// Polled and reported; `carried` commands were carried out.
    Done { carried: usize },
    /// The controller could not be reached; try again after this long.
    Unavailable { retry_after: Duration },
}

/// Bounded exponential backoff.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn next_wait(&mut self) -> Duration {
        let wait = BACKOFF_FIRST.saturating_mul(1u32 << self.failures.min(16)).min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        wait
    }
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// One box's agent.
pub struct Agent<C: Controller> {
    config: AgentConfig,
    trust: TrustRoot,
    controller: C,
    traffic: Option<Box<dyn Traffic + Send>>,
    state: AgentState,
    registered: bool,
    long_poll: Duration,
    backoff: Backoff,
    /// Consecutive failed probes per pipeline since its last command, for live health.
    probe_failures: std::collections::BTreeMap<String, u32>,
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

impl<C: Controller> Agent<C> {
    /// Starts from the state on disk. A command the previous run was carrying out is failed now.
    pub fn start(
        config: AgentConfig,
        trust: TrustRoot,
        controller: C,
        traffic: Option<Box<dyn Traffic + Send>>,
    ) -> Result<Agent<C>, Error> {
        let mut state = AgentState::load(&config.root)?;
        if let Some(progress) = state.in_progress.take() {
            let during = progress
                .last_event
                .map(|event| format!("after {event}"))
                .unwrap_or_else(|| "before its first lifecycle event ended".to_string());
            let pipeline = progress.command.pipeline.clone();
            state.pipelines.entry(pipeline.clone()).or_default().healthy = false;
            state.finish(
                &pipeline,
                CommandOutcome {
                    command: progress.command.id,
                    epoch: progress.command.epoch,
                    succeeded: false,
                    detail: format!(
                        "the agent restarted while carrying out this command ({during}); the box may be half-deployed and needs a new command"
                    ),
                    finished_at: Timestamp::now(),
                },
            );
            state.save(&config.root)?;
        }
        Ok(Agent {
            config,
            trust,
            controller,
            traffic,
            state,
            registered: false,
            long_poll: DEFAULT_LONG_POLL,
            backoff: Backoff::default(),
            probe_failures: Default::default(),
        })
    }

    pub fn state(&self) -> &AgentState {
        &self.state
    }

    pub fn controller(&self) -> &C {
        &self.controller
    }

    /// Runs rounds until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if let Round::Unavailable { retry_after } = self.round() {
                std::thread::sleep(retry_after);
            }
        }
    }

    /// One round: register if needed, long-poll, carry out what is new, report.
    pub fn round(&mut self) -> Round {
        match self.try_round() {
            Ok(carried) => {
                self.backoff.reset();
                Round::Done { carried }
            }
            Err(error) => {
                if matches!(error, TransportError::Unregistered(_)) {
                    self.registered = false;
                }
                eprintln!("agent {}: {error}", self.config.box_id);
                Round::Unavailable { retry_after: self.backoff.next_wait() }
            }
        }
    }

    fn try_round(&mut self) -> Result<usize, TransportError> {
        if !self.registered {
            let registered = self.controller.register(&Register {
                protocol_version: PROTOCOL_VERSION,
                box_id: self.config.box_id.clone(),
                target: self.config.target.clone(),
                highest_epoch_seen: self.state.highest_epoch_seen,
                highest_command_id_seen: self.state.highest_command_id_seen,
                agent_version: format!("gantry {}", env!("CARGO_PKG_VERSION")),
                metrics_url: self.config.metrics_url.clone(),
            })?;
            // Poll no longer than the controller's report interval, so a quiet box still
            // reports that often.
            let max_poll = registered.max_long_poll.as_seconds();
            let interval = registered.report_interval.as_seconds();
            self.long_poll = Duration::from_secs(max_poll.min(interval).max(1));
            self.observe_epoch(registered.epoch);
            self.registered = true;
            // The controller hears what the box runs at once, not after the first long-poll.
            self.report()?;
        }
        let batch = self.controller.poll(&self.config.box_id, self.long_poll)?;
        self.observe_epoch(batch.epoch);
        let mut carried = 0;
        for command in batch.commands {
            match decide(&self.state, &self.config.box_id, &command) {
                Decision::Carry => {
                    self.carry(command)?;
                    carried += 1;
                }
                Decision::AlreadyDone => {}
                refusal => eprintln!(
                    "agent {}: command {} not carried out: {refusal:?}",
                    self.config.box_id, command.id
                ),
            }
        }
        self.report()?;
        Ok(carried)
    }

    fn observe_epoch(&mut self, epoch: u64) {
        if self.state.saw_epoch(epoch)
            && let Err(error) = self.state.save(&self.config.root)
        {
            eprintln!("agent {}: {error}", self.config.box_id);
        }
    }

    fn save(&self) -> Result<(), TransportError> {
        // A box that cannot write its state must not act: it would not know what it did.
        self.state.save(&self.config.root).map_err(|error| {
            TransportError::Unavailable(format!("cannot record the agent's state: {error}"))
        })
    }

    /// Carries out one command: recorded as in progress first, acknowledged, verified and
    /// deployed, then recorded as finished in one write.
    fn carry(&mut self, command: AgentCommand) -> Result<(), TransportError> {
        self.state.highest_command_id_seen = self.state.highest_command_id_seen.max(command.id.0);
        self.state.in_progress = Some(InProgress {
            command: command.clone(),
            started_at: Timestamp::now(),
            last_event: None,
        });
        self.save()?;
        // Acknowledging is advisory: the agent carries on either way and reports what it did.
        let _ = self.controller.acknowledge(
            &self.config.box_id,
            &Acknowledge { command: command.id, epoch: command.epoch },
        );
        let result = self.deploy(&command);
        let directory = PipelineDirectory::open(&self.config.root, &command.pipeline);
        let installed =
            directory.and_then(|d| d.record()).ok().and_then(|r| r.last_successful_install);
        let slot = self.state.pipelines.entry(command.pipeline.clone()).or_default();
        slot.running = installed;
        slot.healthy = result.is_ok();
        slot.health_check = command.health_check.as_ref().map(HealthProbe::from_check);
        self.probe_failures.remove(&command.pipeline);
        self.state.in_progress = None;
        self.state.finish(
            &command.pipeline,
            CommandOutcome {
                command: command.id,
                epoch: command.epoch,
                succeeded: result.is_ok(),
                detail: truncate(
                    result.err().map(|e| e.to_string()).unwrap_or_default(),
                    MAX_OUTCOME_DETAIL_BYTES,
                ),
                finished_at: Timestamp::now(),
            },
        );
        self.save()?;
        // Tell the controller at once; a lost report heals on the next round.
        let _ = self.report();
        Ok(())
    }

    fn deploy(&mut self, command: &AgentCommand) -> Result<(), Error> {
        if self.trust.lists_from_controller() {
            // Fetched afresh for every artifact; a failed fetch leaves the last copies, which
            // still verify only while signed by the box's root, newer than pinned, and fresh.
            match (self.controller.trust_list(), self.controller.block_list()) {
                (Ok(trust_list), Ok(block_list)) => {
                    self.trust.store_fetched(&trust_list, &block_list)?
                }
                (Err(error), _) | (_, Err(error)) => {
                    eprintln!("agent: fetching the signed lists: {error}; using the last copies")
                }
            }
        }
        let directory = PipelineDirectory::open(&self.config.root, &command.pipeline)?;
        let artifact = match deploy::kept_artifact(&directory, &command.artifact) {
            Some(kept) => kept,
            None => self
                .controller
                .download(command)
                .map_err(|e| Error::Package(format!("downloading {}: {e}", command.artifact)))?,
        };
        let target = &command.target;
        let request = DeployRequest {
            deployment_id: command.id.to_string(),
            pipeline: command.pipeline.clone(),
            digest: command.artifact,
            target_name: target.to_string(),
            target_id: target.to_string().replace('/', "-"),
            hook_timeout: Duration::from_secs(command.hook_timeout.as_seconds()),
            health_check: command.health_check.as_ref().map(HealthProbe::from_check),
            health_check_timeout: Duration::from_secs(command.health_check_timeout.as_seconds()),
        };
        let root = self.config.root.clone();
        let state = &mut self.state;
        let mut observe = |record: &crate::lifecycle::EventRecord| {
            if let Some(progress) = &mut state.in_progress {
                progress.last_event = Some(record.event);
            }
            if let Err(error) = state.save(&root) {
                eprintln!("agent: {error}");
            }
        };
        let traffic = self.traffic.as_deref_mut().map(|t| t as &mut dyn Traffic);
        deploy::deploy_with_variables(
            &self.config.root,
            &self.trust,
            &request,
            &artifact,
            &self.config.box_variables,
            traffic,
            &mut observe,
        )
        .map(|_| ())
    }

    /// The box's whole observed state.
    pub fn observation(&self) -> Report {
        let in_progress = self.state.in_progress.as_ref().map(|p| &p.command);
        let mut names: Vec<&String> = self.state.pipelines.keys().collect();
        if let Some(command) = in_progress
            && !names.contains(&&command.pipeline)
        {
            names.push(&command.pipeline);
        }
        let pipelines = names
            .into_iter()
            .map(|name| {
                let mut outcomes: Vec<CommandOutcome> = self
                    .state
                    .outcomes
                    .values()
                    .filter(|(pipeline, _)| pipeline == name)
                    .map(|(_, outcome)| outcome.clone())
                    .collect();
                let skip = outcomes.len().saturating_sub(MAX_REPORTED_OUTCOMES);
                outcomes.drain(..skip);
                PipelineObservation {
                    pipeline: name.clone(),
                    running: self.state.pipelines.get(name).and_then(|p| p.running),
                    health: self.live_health(name),
                    in_progress: in_progress.filter(|c| &c.pipeline == name).map(|c| c.id),
                    outcomes,
                }
            })
            .collect();
        Report {
            observed_at: Timestamp::now(),
            highest_epoch_seen: self.state.highest_epoch_seen,
            highest_command_id_seen: self.state.highest_command_id_seen,
            pipelines,
        }
    }

    /// Health as reported: the last lifecycle's verdict, and — for a pipeline with a health
    /// check — fewer than `unhealthy_threshold` failed probes in a row since.
    fn live_health(&self, pipeline: &str) -> Health {
        let failures = self.probe_failures.get(pipeline).copied().unwrap_or(0);
        let check = self.state.pipelines.get(pipeline).and_then(|p| p.health_check.as_ref());
        match (self.state.health(pipeline), check) {
            (Health::Healthy, Some(check)) if failures >= check.unhealthy_threshold => {
                Health::Unhealthy
            }
            (health, _) => health,
        }
    }

    /// Probes every healthy pipeline's health check once (level-triggered observation).
    fn probe_pipelines(&mut self) {
        for (name, state) in &self.state.pipelines {
            let Some(check) = state.health_check.as_ref().filter(|c| c.port != 0) else {
                continue;
            };
            if !state.healthy {
                continue;
            }
            let failures = self.probe_failures.entry(name.clone()).or_default();
            if crate::health::probe_once("127.0.0.1", check) {
                *failures = 0;
            } else {
                *failures = failures.saturating_add(1);
            }
        }
    }

    fn report(&mut self) -> Result<(), TransportError> {
        self.probe_pipelines();
        let report = self.observation();
        let accepted = self.controller.report(&self.config.box_id, &report)?;
        self.observe_epoch(accepted.epoch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use gantry_model::agent::{CommandId, CommandKind};

    use super::*;

    fn command(id: u64, epoch: u64, box_id: &str) -> AgentCommand {
        AgentCommand {
            id: CommandId(id),
            epoch,
            pipeline: "sample-code".into(),
            target: Target {
                environment: "prod".into(),
                region: "r".into(),
                zone: Some("z".into()),
                cell: None,
            },
            box_id: BoxId(box_id.into()),
            kind: CommandKind::Deploy,
            artifact: gantry_model::Digest::of(b"a"),
            download_path: String::new(),
            hook_timeout: gantry_model::Duration::from_minutes(10),
            health_check_timeout: gantry_model::Duration::from_minutes(5),
            health_check: None,
            deadline: Timestamp::now(),
        }
    }

    fn outcome(id: u64) -> CommandOutcome {
        CommandOutcome {
            command: CommandId(id),
            epoch: 3,
            succeeded: true,
            detail: String::new(),
            finished_at: Timestamp::now(),
        }
    }

    #[test]
    fn what_a_command_means() {
        let mut state = AgentState { highest_epoch_seen: 3, ..AgentState::default() };
        state.finish("sample-code", outcome(10));
        state.finish("sample-code", outcome(12));
        let me = BoxId("b1".into());
        for (command, expected) in [
            (command(13, 3, "b1"), Decision::Carry),
            (command(13, 4, "b1"), Decision::Carry),
            (command(13, 2, "b1"), Decision::StaleEpoch { highest_seen: 3 }),
            (command(12, 3, "b1"), Decision::AlreadyDone),
            (command(11, 3, "b1"), Decision::Carry),
            (command(9, 3, "b1"), Decision::Forgotten),
            (command(13, 3, "b2"), Decision::NotThisBox),
        ] {
            assert_eq!(decide(&state, &me, &command), expected, "{command:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..12).map(|_| backoff.next_wait()).collect();
        assert_eq!(waits[0], BACKOFF_FIRST);
        assert_eq!(waits[1], BACKOFF_FIRST * 2);
        assert_eq!(waits[2], BACKOFF_FIRST * 4);
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        backoff.reset();
        assert_eq!(backoff.next_wait(), BACKOFF_FIRST);
    }
}
