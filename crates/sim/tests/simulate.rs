//! The simulator as CI runs it: a batch of seeds with faults on — the controller crashing at
//! each of the round driver's named points, pipelines sharing boxes — every seed checked
//! against the invariants and the records it writes, some run twice for determinism, and
//! planted bugs that the checks must catch.

use gantry_engine::{Engine, PlantedBug};
use gantry_sim::{Options, batch, run};

/// Seeds in the default batch. `gantry simulate --seeds N` runs more.
const DEFAULT_BATCH: u64 = 1_000;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[test]
fn default_batch_holds_every_invariant() {
    let options = Options::default();
    let report = batch(0, DEFAULT_BATCH, threads(), false, &options);
    let seconds = report.wall.as_secs_f64();
    eprintln!(
        "{} seeds in {seconds:.1} s ({:.1} seeds/s), {} engine steps, {} simulated\n{}",
        report.seeds,
        report.seeds as f64 / seconds,
        report.engine_steps,
        report.simulated,
        report.coverage
    );
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|(seed, violation)| {
            format!(
                "seed {seed}: {} at {}: {}",
                violation.invariant, violation.at, violation.detail
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "replay with `gantry simulate --seed S`:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        report.coverage.missing(),
        Vec::<&str>::new(),
        "the batch never reached these branches"
    );
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let report = batch(0, 40, threads(), true, &Options::default());
    assert_eq!(report.nondeterministic, Vec::<u64>::new());
}

/// Runs seeds with a planted bug until one breaks `invariant`; returns that seed.
fn caught(bug: fn(&mut Engine), invariant: &str) -> u64 {
    let options = Options { prepare: Some(bug), ..Options::default() };
    for seed in 0..200 {
        let report = run::run(seed, &options);
        if report.violations.iter().any(|violation| violation.invariant == invariant) {
            // The failure reproduces from its seed alone.
            let again = run::run(seed, &options);
            assert_eq!(again.violations, report.violations, "seed {seed} does not reproduce");
            return seed;
        }
    }
    panic!("no seed caught the planted bug breaking {invariant}");
}

#[test]
fn a_planted_capacity_bug_is_caught() {
    caught(|engine| engine.plant_bug(PlantedBug::IgnoreCapacityFloor), "I1 capacity floor");
}

#[test]
fn a_planted_bake_skip_is_caught() {
    caught(|engine| engine.plant_bug(PlantedBug::SkipBake), "I3 promotion requires baked evidence");
}

#[test]
fn a_planted_second_zone_of_a_region_is_caught() {
    // The example: a region's next zone starting while its current one still bakes.
    caught(|engine| engine.plant_bug(PlantedBug::NextZoneBeforeBake), "I2 blast radius");
}

#[test]
fn a_planted_unaudited_command_is_caught() {
    caught(|engine| engine.plant_bug(PlantedBug::UnauditedCommands), "I16 audit completeness");
}

#[test]
fn a_planted_unreported_record_write_is_caught() {
    caught(
        |engine| engine.plant_bug(PlantedBug::UnreportedTargetWrite),
        "I20 every write reported",
    );
}

#[test]
fn a_planted_reissue_after_restart_is_caught() {
    caught(|engine| engine.plant_bug(PlantedBug::ReissueOnRestart), "I11 write-ahead intent");
}

#[test]
fn a_planted_repair_of_boxes_unknown_since_a_restart_is_caught() {
    caught(|engine| engine.plant_bug(PlantedBug::RepairUnknownBoxes), "I22 unknown is not empty");
}
