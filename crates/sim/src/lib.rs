//! Gantry's seeded simulator: the pure engine against simulated fleets, agents, alarms, people
//! and a lossy network on a virtual clock, in the style of TigerBeetle's VOPR.
//!
//! A seed draws a world ([`generate`]): topology, one or two pipelines built from the model
//! types, fleets, a start instant near DST changes or holidays, and fault rates. [`run::run`]
//! plays it: a safety phase with faults (dropped, duplicated and reordered messages, failing and
//! hanging hooks, corrupt downloads, health flaps, agent crashes, boxes added and removed,
//! controller restarts through the serialized state with a stale leader, flapping and missing
//! alarms, bad and unreviewed artifacts, operators) and the invariants of [`check`] after every
//! engine step; then a liveness phase that heals everything and requires every deployment to
//! finish. [`batch`] runs many seeds on every core, each twice, and compares trace hashes.
//!
//! Architecture invariant: a run depends on its seed alone. All randomness comes from one seeded
//! [`rng::Rng`], all time from the virtual clock, all ordering from `BTreeMap`s; a failure prints
//! its seed and `gantry simulate --seed S` replays it.

pub mod check;
pub mod cli;
pub mod coverage;
pub mod generate;
pub mod rng;
pub mod run;
pub mod scenario;

/// The what-if ETA and the timeline live with the round driver (the server needs them without
/// the simulator); re-exported here for the simulator's users.
pub use gantry_driver::{eta, timeline};

use std::time::{Duration, Instant};

pub use coverage::Coverage;
pub use run::{CrashPoint, Options, Report};

/// What a batch of seeds found.
#[derive(Debug, Default)]
pub struct BatchReport {
    pub seeds: u64,
    pub engine_steps: u64,
    pub simulated: jiff::SignedDuration,
    pub coverage: Coverage,
    /// Seeds that broke an invariant, with the first violation.
    pub failures: Vec<(u64, check::Violation)>,
    /// Seeds whose two runs gave different traces.
    pub nondeterministic: Vec<u64>,
    pub wall: Duration,
}

/// Runs seeds `first..first + count` on `threads` threads; each seed runs twice when
/// `double_check` is set, and its two trace hashes must agree.
pub fn batch(
    first: u64,
    count: u64,
    threads: usize,
    double_check: bool,
    options: &Options,
) -> BatchReport {
    let started = Instant::now();
    let next = std::sync::atomic::AtomicU64::new(first);
    let results = std::sync::Mutex::new(BatchReport::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= first + count {
                        break;
                    }
                    let report = run::run(seed, options);
                    let again = double_check.then(|| run::run(seed, options).trace_hash);
                    let mut results = results.lock().expect("no thread panics while holding it");
                    results.seeds += 1;
                    results.engine_steps += report.engine_steps;
                    results.simulated += report.simulated;
                    results.coverage.merge(&report.coverage);
                    if let Some(violation) = report.violations.first() {
                        results.failures.push((seed, violation.clone()));
                    }
                    if again.is_some_and(|hash| hash != report.trace_hash) {
                        results.nondeterministic.push(seed);
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no thread panicked");
    results.failures.sort_by_key(|(seed, _)| *seed);
    results.nondeterministic.sort();
    results.wall = started.elapsed();
    results
}
