//! The agent's durability through the in-memory controller: a re-delivered command is answered
//! with its outcome instead of being carried out again, older epochs are refused, the state
//! survives a restart (including one in the middle of a command), and a controller outage is
//! ridden out with a growing, bounded backoff.
//!
//! Every command here names an artifact that fails verification (bytes that are no package), so
//! the evidence of "carried out" is the download and the recorded outcome.

use std::path::Path;

use gantry_agent::agent::{Agent, AgentConfig, Round};
use gantry_agent::controller::MemoryController;
use gantry_agent::state::{AgentState, InProgress};
use gantry_agent::verify::{Artifact, TrustRoot};
use gantry_model::agent::{AgentCommand, BoxId, CommandId, CommandKind};
use gantry_model::plan::Target;
use gantry_model::{Digest, Duration, Timestamp};
use gantry_supply::blocks::BlockList;
use gantry_supply::keys::TrustedKeys;

fn target() -> Target {
    Target {
        environment: "prod".into(),
        region: "eu-west-1".into(),
        zone: Some("eu-west-1a".into()),
        cell: None,
    }
}

fn bogus() -> Artifact {
    Artifact {
        package: b"not a package".to_vec(),
        attestation: b"{}".to_vec(),
        manifest: b"{}".to_vec(),
    }
}

fn command(id: u64, epoch: u64) -> AgentCommand {
    AgentCommand {
        id: CommandId(id),
        epoch,
        pipeline: "sample-code".into(),
        target: target(),
        box_id: BoxId("box-1".into()),
        kind: CommandKind::Deploy,
        artifact: Digest::of(&bogus().package),
        download_path: String::new(),
        hook_timeout: Duration::from_minutes(10),
        health_check_timeout: Duration::from_minutes(5),
        health_check: None,
        deadline: Timestamp::now(),
    }
}

fn start_agent(root: &Path, controller: &MemoryController) -> Agent<MemoryController> {
    let config = AgentConfig {
        root: root.to_path_buf(),
        box_id: BoxId("box-1".into()),
        target: target(),
        box_variables: Default::default(),
        metrics_url: None,
    };
    let trust = TrustRoot::insecure_unpinned(
        TrustedKeys::default(),
        vec!["builder".into()],
        BlockList::default(),
    );
    Agent::start(config, trust, controller.clone(), None).unwrap()
}

fn controller(epoch: u64) -> MemoryController {
    let controller = MemoryController::default();
    {
        let mut world = controller.world.lock().unwrap();
        world.epoch = epoch;
        world.artifacts.insert(Digest::of(&bogus().package), bogus());
    }
    controller
}

fn send(controller: &MemoryController, commands: Vec<AgentCommand>) {
    controller.world.lock().unwrap().batches.push_back(commands);
}

fn downloads(controller: &MemoryController) -> usize {
    controller.world.lock().unwrap().downloads.len()
}

#[test]
fn a_redelivered_command_is_answered_with_its_outcome_not_carried_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(3);
    let mut agent = start_agent(dir.path(), &controller);
    send(&controller, vec![command(7, 3)]);
    assert_eq!(agent.round(), Round::Done { carried: 1 });
    send(&controller, vec![command(7, 3), command(7, 3)]);
    assert_eq!(agent.round(), Round::Done { carried: 0 });
    assert_eq!(downloads(&controller), 1, "carried out once");
    let world = controller.world.lock().unwrap();
    let last = world.reports.last().unwrap();
    let outcome = last.pipelines[0].outcomes.last().unwrap();
    assert_eq!(outcome.command, CommandId(7));
    assert!(!outcome.succeeded);
    assert!(outcome.detail.contains("refused before anything ran"), "{}", outcome.detail);
    assert_eq!(world.acknowledgements.len(), 1);
}

#[test]
fn commands_of_an_older_epoch_are_refused_and_the_epoch_is_kept_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(5);
    let mut agent = start_agent(dir.path(), &controller);
    assert_eq!(agent.round(), Round::Done { carried: 0 });
    assert_eq!(AgentState::load(dir.path()).unwrap().highest_epoch_seen, 5);
    // A deposed controller, restored from an old backup, still speaks with epoch 4.
    controller.world.lock().unwrap().epoch = 4;
    send(&controller, vec![command(8, 4)]);
    assert_eq!(agent.round(), Round::Done { carried: 0 });
    assert_eq!(downloads(&controller), 0, "nothing of a stale command is carried out");
    // After a restart the agent still refuses it.
    drop(agent);
    let mut agent = start_agent(dir.path(), &controller);
    send(&controller, vec![command(8, 4)]);
    agent.round();
    assert_eq!(downloads(&controller), 0);
    assert_eq!(
        controller.world.lock().unwrap().registrations.last().unwrap().highest_epoch_seen,
        5
    );
}

#[test]
fn outcomes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(2);
    let mut agent = start_agent(dir.path(), &controller);
    send(&controller, vec![command(3, 2)]);
    agent.round();
    drop(agent);
    let mut agent = start_agent(dir.path(), &controller);
    send(&controller, vec![command(3, 2)]);
    assert_eq!(agent.round(), Round::Done { carried: 0 });
    assert_eq!(downloads(&controller), 1, "the restarted agent answered from its record");
    let register = controller.world.lock().unwrap().registrations.last().unwrap().clone();
    assert_eq!(register.highest_command_id_seen, 3);
}

#[test]
fn a_command_interrupted_by_a_restart_is_reported_failed_and_not_resumed_blindly() {
    let dir = tempfile::tempdir().unwrap();
    // What the disk holds after `kill -9` in the middle of command 4: the agent records a command
    // as in progress before it acts.
    let state = AgentState {
        highest_epoch_seen: 2,
        highest_command_id_seen: 4,
        in_progress: Some(InProgress {
            command: command(4, 2),
            started_at: Timestamp::now(),
            last_event: Some(gantry_agent::appspec::LifecycleEvent::BeforeInstall),
        }),
        ..AgentState::default()
    };
    state.save(dir.path()).unwrap();
    let controller = controller(2);
    let mut agent = start_agent(dir.path(), &controller);
    assert!(agent.state().in_progress.is_none());
    send(&controller, vec![command(4, 2)]);
    assert_eq!(agent.round(), Round::Done { carried: 0 });
    assert_eq!(downloads(&controller), 0);
    let world = controller.world.lock().unwrap();
    let observation = &world.reports.last().unwrap().pipelines[0];
    let outcome = observation.outcomes.last().unwrap();
    assert_eq!(outcome.command, CommandId(4));
    assert!(!outcome.succeeded);
    assert!(
        outcome.detail.contains("restarted") && outcome.detail.contains("after BeforeInstall"),
        "{}",
        outcome.detail
    );
    assert_eq!(observation.health, gantry_model::agent::Health::Unhealthy);
    drop(world);
    // The controller's next command (a repair, under a new id) is carried out.
    send(&controller, vec![command(5, 2)]);
    assert_eq!(agent.round(), Round::Done { carried: 1 });
}

#[test]
fn a_controller_outage_is_ridden_out_with_a_growing_bounded_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(1);
    controller.world.lock().unwrap().unavailable_calls = 4;
    let mut agent = start_agent(dir.path(), &controller);
    let mut waits = Vec::new();
    while let Round::Unavailable { retry_after } = agent.round() {
        waits.push(retry_after);
        assert!(waits.len() < 10, "the agent reconnects once the controller is back");
    }
    assert_eq!(waits.len(), 4);
    assert!(waits.windows(2).all(|w| w[0] < w[1]), "{waits:?}");
    assert!(waits.iter().all(|w| *w <= gantry_agent::agent::BACKOFF_MAX));
    // Back: it registered once the controller answered, and reports.
    assert_eq!(controller.world.lock().unwrap().registrations.len(), 1);
    assert!(!controller.world.lock().unwrap().reports.is_empty());
}

#[test]
fn a_box_whose_service_stops_answering_its_health_check_is_reported_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    // What the disk holds after a successful deployment whose pipeline has a health check; the
    // service has since died (nothing listens on its port).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut state = AgentState { highest_epoch_seen: 1, ..AgentState::default() };
    state.pipelines.insert(
        "sample-code".into(),
        gantry_agent::state::PipelineState {
            running: Some(Digest::of(b"v1")),
            healthy: true,
            health_check: Some(gantry_agent::health::HealthProbe {
                path: "/health".into(),
                port,
                interval: std::time::Duration::from_millis(100),
                timeout: std::time::Duration::from_millis(200),
                healthy_threshold: 2,
                unhealthy_threshold: 2,
            }),
        },
    );
    state.save(dir.path()).unwrap();
    let controller = controller(1);
    let mut agent = start_agent(dir.path(), &controller);
    // A round reports twice (after registering, after the poll), probing before each.
    agent.round();
    let world = controller.world.lock().unwrap();
    let health: Vec<_> = world.reports.iter().map(|r| r.pipelines[0].health).collect();
    use gantry_model::agent::Health::{Healthy, Unhealthy};
    // One failed probe is not yet enough (unhealthy_threshold 2); two in a row are.
    assert_eq!(health, [Healthy, Unhealthy]);
}
