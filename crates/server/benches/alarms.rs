//! The alarm path's latency, printed (not asserted): from an alarm's transition to ALARM to the
//! rollback command received by the agent's long-poll (issue goal: at most one second), and
//! from the breach on a box's scraped `/metrics` (its fault counter jumps) to that command.
//!
//! Each run is a fresh controller serving real HTTP on loopback with its round loop and alarm
//! loop, two simulated agents, and a real `/metrics` endpoint per box (the harness of
//! `tests/alarms.rs`); a bad artifact reaches the one box, whose faults roll it back. The breach
//! waits for the alarm's 10-second period to close, so that figure is dominated by the period.
//!
//! `cargo bench -p gantry-server --bench alarms`; `GANTRY_ALARM_BENCH_RUNS` sets the runs
//! (default 5).

#[path = "../tests/support/alarm_world.rs"]
mod alarm_world;

use std::time::Duration;

use alarm_world::World;
use gantry_model::{Digest, Timestamp};

/// Runs when `GANTRY_ALARM_BENCH_RUNS` is not set.
const DEFAULT_RUNS: usize = 5;

fn main() {
    let runs = std::env::var("GANTRY_ALARM_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_RUNS);
    let mut transition_to_command = Vec::new();
    let mut breach_to_command = Vec::new();
    for run in 0..runs {
        let old = Digest::of(b"shop v1");
        let world = World::start(2, &old.to_string());
        world.wait_for("a scraped OK reading", Duration::from_secs(60), |world| {
            world.alarm("east")["state"] == "OK"
        });
        let bad = Digest::of(format!("shop v2, faulty, run {run}").as_bytes());
        world.bad.lock().unwrap().insert(bad.to_string());
        world.artifact_ready(&bad, 2, None);
        let rollback = |world: &World| {
            world.agents.keys().find_map(|b| {
                let log = world.log(b);
                log.received.iter().find(|r| r.kind == "roll_back").map(|r| (b.clone(), r.clone()))
            })
        };
        world.wait_for("the rollback", Duration::from_secs(60), |world| rollback(world).is_some());
        let (box_id, received) = rollback(&world).unwrap();
        let alarm = world.alarm("east");
        let fired: Timestamp = alarm["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|t| t["to"] == "ALARM")
            .and_then(|t| t["at"].as_str()?.parse().ok())
            .expect("a transition to ALARM");
        let breached = world.endpoint.boxes.lock().unwrap()[&box_id].breached_at.unwrap();
        let a = received.at.duration_since(fired).as_secs_f64() * 1000.0;
        let b = received.instant.duration_since(breached).as_secs_f64() * 1000.0;
        println!(
            "run {run}: transition → rollback received {a:.1} ms; breach → received {b:.0} ms"
        );
        transition_to_command.push(a);
        breach_to_command.push(b);
    }
    for (what, values) in [
        (
            "alarm transition to ALARM → rollback command received by the agent",
            &mut transition_to_command,
        ),
        (
            "breach on scraped /metrics → rollback command received by the agent",
            &mut breach_to_command,
        ),
    ] {
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        let max = values[values.len() - 1];
        println!("{what}: median {median:.1} ms, max {max:.1} ms over {} runs", values.len());
    }
}
