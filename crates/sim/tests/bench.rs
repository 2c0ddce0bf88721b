//! Benchmarks, not timed tests: run with
//! `cargo test --release -p gantry-sim --test bench -- --ignored --nocapture`.

use std::time::Instant;

use gantry_engine::fleet::{BoxId, BoxObservation, Health};
use gantry_engine::{Digest, Engine, Input};
use gantry_sim::scenario;

const ONE_PIPELINE: &str = r#"{
  "start": "2026-11-24T14:00:00Z", "until": "1h",
  "regions": [{"name": "r1", "time_zone": "America/New_York", "zones": 3, "boxes": 10},
              {"name": "r2", "time_zone": "Europe/Berlin", "zones": 3, "boxes": 10}],
  "pipelines": [{"name": "p", "gamma": true, "waves": [["r1"], ["r2"]]}]
}"#;

/// Engine step cost with 10,000 pipelines: a fleet observation (reconciles one pipeline) and
/// an alarm reading or tick (reconciles all of them).
#[test]
#[ignore = "a benchmark; run it in release"]
fn engine_step_cost_with_ten_thousand_pipelines() {
    let parsed = scenario::parse(ONE_PIPELINE).unwrap();
    let world = scenario::world(&parsed).unwrap();
    let plans: Vec<_> = (0..10_000)
        .map(|number| {
            let mut plan = world.plans[0].clone();
            plan.pipeline = format!("pipeline-{number}");
            plan
        })
        .collect();
    let mut engine = Engine::new(plans, world.region_zones.clone()).unwrap();
    let now = parsed.start;
    engine.step(now, Input::ControllerStarted { epoch: 1 });
    let target = world.plans[0].stages[1].steps[0].targets[0].clone();
    let boxes: Vec<BoxObservation> = (0..10)
        .map(|n| BoxObservation {
            id: BoxId(format!("b{n}")),
            running: Some(Digest("sha256:base".into())),
            health: Health::Healthy,
            last_command: None,
        })
        .collect();
    let rounds = 200;
    let started = Instant::now();
    for round in 0..rounds {
        let at = now + jiff::SignedDuration::from_secs(round);
        let input = Input::Fleet {
            pipeline: "pipeline-7".into(),
            target: target.clone(),
            observed_at: at,
            boxes: boxes.clone(),
        };
        engine.step(at, input);
    }
    let scoped = started.elapsed() / rounds as u32;
    let started = Instant::now();
    for round in 0..20 {
        engine.step(now + jiff::SignedDuration::from_secs(1000 + round), Input::Tick);
    }
    let global = started.elapsed() / 20;
    eprintln!(
        "10,000 pipelines: {scoped:?} per one-pipeline step, {global:?} per all-pipeline step (tick or alarm)"
    );
}
