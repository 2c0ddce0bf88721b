//! The round driver against the in-memory store: what a start writes, what a round commits,
//! what a failed commit leaves behind, and what a restart finds. (The simulator drives it
//! through crashes at every named point; these pin the contract down one step at a time.)

use gantry_driver::Driver;
use gantry_engine::input::{Input, OperatorCommand};
use gantry_engine::{Engine, Event};
use gantry_model::Plan;
use gantry_model::pipeline::{
    AlarmBlockers, CodeReview, Limits, SourceKind, TimeWindows, UrgentPolicy,
};
use gantry_store::{MemoryStore, RecordKind, Store};
use jiff::Timestamp;

fn plan() -> Plan {
    Plan {
        pipeline: "api".into(),
        team: "team".into(),
        service: "api".into(),
        kind: SourceKind::Code,
        sources: Vec::new(),
        build_command: String::new(),
        build_network: false,
        code_review: CodeReview::Required,
        stages: Vec::new(),
        alarm_blockers: AlarmBlockers::default(),
        time_windows: TimeWindows::default(),
        limits: Limits::default(),
        urgent: UrgentPolicy::default(),
    }
}

fn fresh() -> Result<Engine, gantry_engine::Error> {
    Engine::new(vec![plan()], Default::default())
}

fn hold(id: &str) -> Input {
    Input::Operator {
        id: id.into(),
        by: "oncall".into(),
        command: OperatorCommand::Hold { pipeline: "api".into(), stage: None, reason: "x".into() },
    }
}

fn accepted(actions: &[gantry_engine::Action]) -> bool {
    actions.iter().any(|action| {
        matches!(action, gantry_engine::Action::Notify(Event::CommandAccepted { .. }))
    })
}

#[test]
fn a_round_commits_whole_and_a_failed_one_leaves_nothing_behind() {
    let now: Timestamp = "2026-11-24T14:00:00Z".parse().unwrap();
    let (driver, started) = Driver::start(MemoryStore::new(), fresh, 7, now, None).unwrap();
    assert_eq!(started.epoch, 8, "past the highest epoch an agent reported");
    let mut driver = driver.checked();
    let kinds: Vec<RecordKind> = driver.store().records().keys().map(|key| key.kind).collect();
    assert_eq!(kinds, [RecordKind::Global, RecordKind::Pipeline, RecordKind::Plan]);
    assert_eq!(driver.store().stats().commits, 1, "the start round is committed");

    // A failed commit loses the round whole: the hold is not applied.
    driver.store_mut().fail_commits(1);
    let failed = driver.round(now, vec![hold("op-1")]);
    assert!(matches!(failed, Err(gantry_driver::Error::Store(_))), "{failed:?}");
    assert!(!driver.engine().status("api").unwrap().held, "the failed round's hold is gone");

    // The same command again commits; a round with nothing new writes nothing.
    let committed = driver.round(now, vec![hold("op-1")]).unwrap();
    assert!(accepted(&committed.actions));
    assert!(committed.record_bytes > 0);
    assert!(driver.engine().status("api").unwrap().held);
    let quiet = driver.round(now, vec![Input::Tick]).unwrap();
    assert_eq!(quiet.record_bytes, 0, "nothing changed, nothing written");

    // A restart finds the hold, and the clock never goes back.
    let store = driver.into_store();
    let (driver, started) = Driver::start(store, fresh, 0, now, None).unwrap();
    assert_eq!(started.epoch, 9);
    assert!(driver.engine().status("api").unwrap().held, "the hold survived the restart");
    let mut driver = driver;
    let earlier: Timestamp = "2026-11-24T13:00:00Z".parse().unwrap();
    let round = driver.round(earlier, vec![Input::Tick]).unwrap();
    assert_eq!(round.now, now, "a round is never earlier than the last");
}

#[test]
fn records_of_another_schema_version_are_refused() {
    let now: Timestamp = "2026-11-24T14:00:00Z".parse().unwrap();
    let (driver, _) = Driver::start(MemoryStore::new(), fresh, 0, now, None).unwrap();
    let mut store = driver.into_store();
    let loaded = store.load().unwrap();
    let mut round = gantry_store::Round {
        schema_version: gantry_engine::SCHEMA_VERSION + 1,
        ..Default::default()
    };
    round.high_water = loaded.high_water;
    store.commit(round).unwrap();
    let refused = Driver::start(store, fresh, 0, now, None).map(|_| ());
    assert!(
        matches!(
            refused,
            Err(gantry_driver::Error::Engine(gantry_engine::Error::SchemaVersion { .. }))
        ),
        "{refused:?}"
    );
}
