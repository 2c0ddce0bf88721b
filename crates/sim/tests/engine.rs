//! The engine driven directly, for behaviour the simulator's fault mix does not pin down.

use gantry_engine::fleet::{BoxId, BoxObservation, Health};
use gantry_engine::limits::RESEND_UNOBSERVED;
use gantry_engine::{Action, ArtifactReady, BoxCommand, Commit, Digest, Engine, Input};
use gantry_sim::scenario;
use jiff::{SignedDuration, Timestamp};

const GAMMA_FIRST: &str = r#"{
  "start": "2026-11-24T14:00:00Z", "until": "1h",
  "regions": [{"name": "r1", "time_zone": "America/New_York", "zones": 1, "boxes": 10}],
  "pipelines": [{"name": "api", "gamma": true, "waves": [["r1"]]}]
}"#;

fn deploys(actions: &[Action]) -> Vec<BoxCommand> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Deploy(command) => Some(command.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_command_the_agent_acknowledged_is_not_sent_again() {
    let parsed = scenario::parse(GAMMA_FIRST).unwrap();
    let world = scenario::world(&parsed).unwrap();
    let plan = &world.plans[0];
    let target = plan.stages[0].steps[0].targets[0].clone();
    let mut engine = Engine::new(vec![plan.clone()], world.region_zones.clone()).unwrap();
    let start: Timestamp = parsed.start;
    let base = Digest("sha256:base".into());
    let observe = |at: Timestamp, in_progress: Option<gantry_engine::CommandId>| Input::Fleet {
        pipeline: "api".into(),
        target: target.clone(),
        observed_at: at,
        boxes: (0..10)
            .map(|n| BoxObservation {
                id: BoxId(format!("b{n}")),
                running: Some(base.clone()),
                health: Health::Healthy,
                last_command: None,
                in_progress: in_progress.filter(|_| n == 0),
            })
            .collect(),
    };
    engine.step(start, Input::ControllerStarted { epoch: 1 });
    let ready = ArtifactReady {
        digest: Digest("sha256:api-1".into()),
        sequence: 1,
        previous: None,
        commits: vec![Commit { id: "c1".into(), author: "a".into(), approvers: vec!["b".into()] }],
        packages: Vec::new(),
        signature_verified: true,
    };
    let actions = engine.step_many(
        start,
        [observe(start, None), Input::ArtifactReady { pipeline: "api".into(), artifact: ready }],
    );
    let first = deploys(&actions);
    assert!(!first.is_empty(), "the gamma deployment starts: {actions:?}");
    let command = first[0].clone();

    // No report of the boxes since: nothing to go on until RESEND_UNOBSERVED has passed.
    let quiet = start + SignedDuration::from_secs(RESEND_UNOBSERVED - 1);
    let resent = deploys(&engine.step_many(quiet, [Input::Tick]));
    assert!(resent.is_empty(), "not re-sent without evidence: {resent:?}");

    // A report made after the send shows the agent lacks the command: sent again at once.
    let later = quiet + SignedDuration::from_secs(1);
    let resent = deploys(&engine.step_many(later, [observe(later, None), Input::Tick]));
    assert!(resent.iter().any(|c| c.id == command.id), "re-sent: {resent:?}");

    // Acknowledged: the next report re-sends the others but not this one.
    let after = later + SignedDuration::from_secs(30);
    let resent = deploys(&engine.step_many(after, [observe(after, Some(command.id)), Input::Tick]));
    assert!(!resent.iter().any(|c| c.id == command.id), "not re-sent: {resent:?}");
    assert!(!resent.is_empty(), "the unacknowledged ones still are");
}
