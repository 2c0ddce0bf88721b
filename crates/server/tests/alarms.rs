//! The alarm loop wired into the controller: alarm states and bake data points come from
//! scraping each box's real HTTP `/metrics` endpoint, and a breach on the one box rolls it back
//! with a command its agent's long-poll receives — the rollback naming the alarm in the audit
//! log. The controller serves real HTTP on loopback; the agents are simulated over it; the test
//! plays the build service, handing the engine each artifact (see `support/alarm_world.rs`).

#[path = "support/alarm_world.rs"]
mod alarm_world;

use std::time::Duration;

use alarm_world::{ALARM, PIPELINE, World};
use gantry_model::Digest;

/// How long a story may take: the alarm's period is 10 s, bakes are seconds.
const PATIENCE: Duration = Duration::from_secs(60);

fn digest(name: &str) -> Digest {
    Digest::of(name.as_bytes())
}

#[test]
fn a_good_change_bakes_on_scraped_data_points_and_reaches_every_box() {
    let old = digest("shop v1");
    let world = World::start(2, &old.to_string());
    // The alarm is evaluated from scraped samples before anything deploys.
    world.wait_for("a scraped OK reading", PATIENCE, |world| world.alarm("east")["state"] == "OK");
    let alarm = world.alarm("east");
    assert_eq!(alarm["scope"]["service"], "shop", "{alarm}");
    assert!(
        alarm["recent_values"].as_array().unwrap().iter().any(|v| v["value"].as_f64() == Some(0.0)),
        "a fault ratio of 0 read from the boxes: {alarm}"
    );
    let new = digest("shop v2");
    world.artifact_ready(&new, 2, None);
    world.wait_for("the good change on every box", PATIENCE, |world| {
        world.agents.keys().all(|b| world.log(b).running.as_deref() == Some(&new.to_string()))
    });
    // The bakes needed data points of the scraped request counter: they were counted.
    let audit = world.audit();
    let baked: Vec<&serde_json::Value> =
        audit.iter().filter(|r| r.to_string().contains("step_baked")).collect();
    assert!(!baked.is_empty(), "steps baked: {audit:#?}");
    for box_id in world.agents.keys() {
        let kinds: Vec<String> =
            world.log(box_id).received.iter().map(|r| r.kind.clone()).collect();
        assert_eq!(kinds, ["deploy"], "{box_id}");
    }
    let metrics = world.metrics();
    for counter in ["gantry_scrapes_total", "gantry_alarm_evaluations_total"] {
        let line = metrics.lines().find(|line| line.starts_with(counter));
        let count: f64 = line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0);
        assert!(count > 0.0, "{counter}: {metrics}");
    }
}

#[test]
fn a_breach_on_the_one_box_rolls_it_back_naming_the_alarm() {
    let old = digest("shop v1");
    let world = World::start(2, &old.to_string());
    world.wait_for("a scraped OK reading", PATIENCE, |world| world.alarm("east")["state"] == "OK");
    let bad = digest("shop v2, faulty");
    world.bad.lock().unwrap().insert(bad.to_string());
    world.artifact_ready(&bad, 2, None);
    let rolled_back = |world: &World| {
        world.agents.keys().any(|b| world.log(b).received.iter().any(|r| r.kind == "roll_back"))
    };
    world.wait_for("the one box's rollback", PATIENCE, rolled_back);

    // Exactly one box ever ran the bad artifact, and it went back to the old one.
    let ran_bad: Vec<&String> =
        world.agents.keys().filter(|b| world.log(b).ran.contains(&bad.to_string())).collect();
    assert_eq!(ran_bad.len(), 1, "only the one box installed the bad change");
    let one_box = ran_bad[0].clone();
    let log = world.log(&one_box);
    let kinds: Vec<(&str, String)> =
        log.received.iter().map(|r| (r.kind.as_str(), r.artifact.clone())).collect();
    assert_eq!(kinds, [("deploy", bad.to_string()), ("roll_back", old.to_string())]);
    assert_eq!(log.running.as_deref(), Some(old.to_string().as_str()));
    let received = log.received[1].clone();
    drop(log);

    // The alarm's state came from scraping: it went to ALARM on the scraped ratio.
    let alarm = world.alarm("east");
    let fired = alarm["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["to"] == "ALARM")
        .unwrap_or_else(|| panic!("no transition to ALARM: {alarm}"))
        .clone();
    assert!(
        fired["reason"].as_str().unwrap().contains("1 of 1 data points was greater"),
        "{fired}"
    );
    // The rollback names the alarm in the audit log.
    let audit = world.audit();
    let rollback = audit
        .iter()
        .find(|r| r.to_string().contains("roll") && r.to_string().contains(ALARM))
        .unwrap_or_else(|| panic!("no rollback naming {ALARM}: {audit:#?}"));
    assert!(rollback.to_string().contains("in ALARM in east"), "{rollback}");
    // The change never went past its one box.
    let (_, pipeline) = world.get(&format!("/api/v1/pipelines/{PIPELINE}"));
    assert!(pipeline.to_string().contains("failed"), "{pipeline}");

    let since: gantry_model::Timestamp = fired["at"].as_str().unwrap().parse().unwrap();
    let breached = world.endpoint.boxes.lock().unwrap()[&one_box].breached_at.unwrap();
    eprintln!(
        "alarm transition to rollback received by the agent: {} ms; breach on /metrics to rollback \
         received: {} ms",
        received.at.duration_since(since).as_millis(),
        received.instant.duration_since(breached).as_millis()
    );
}
