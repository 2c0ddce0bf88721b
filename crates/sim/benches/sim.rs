//! Benchmarks of the engine and the simulator, run with `cargo bench -p gantry-sim` (release
//! build). They print measurements; they assert nothing about time.
//!
//! 1. What-if ETA compute time for every pipeline of the example organisation.
//! 2. Simulated seeds per minute per core, and simulated time per real second.
//! 3. Engine step cost with 10,000 pipelines: a box report (reconciles one pipeline) and a
//!    tick (reconciles all of them), changed records included.
//! 4. Bytes the store writes per round with 1,000 and 10,000 pipelines, 10,000 boxes reporting.
//!
//! `cargo bench -p gantry-sim -- eta` runs only the first (the names are `eta`, `seeds`,
//! `engine`, `store`).

use std::path::Path;
use std::time::{Duration, Instant};

use gantry_driver::Driver;
use gantry_engine::fleet::{BoxId, BoxReport, Health};
use gantry_engine::{Digest, Engine, Input};
use gantry_sim::{Options, batch, eta, scenario};
use gantry_store::MemoryStore;

/// The example organisation's pipelines, from the workspace root.
const EXAMPLES: &[&str] = &[
    "examples/services/cart-service/config.yaml",
    "examples/services/cart-service/code.jsonnet",
    "examples/services/cart-service/infra.yaml",
    "examples/services/checkout-api/code.yaml",
    "examples/services/checkout-api/config.yaml",
    "examples/services/checkout-api/infra.yaml",
    "examples/services/payments-ledger/code.yaml",
    "examples/services/payments-ledger/config.yaml",
    "examples/services/payments-ledger/infra.yaml",
    "examples/services/payments-ledger/tools.yaml",
];

/// A Monday 09:00 UTC start, so every figure is reproducible.
const START: &str = "2026-11-02T09:00:00Z";

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    if wanted("eta") {
        eta_compute_time();
    }
    if wanted("seeds") {
        seeds_per_minute();
    }
    if wanted("engine") {
        engine_step_cost();
    }
    if wanted("store") {
        store_bytes();
    }
}

/// The fastest and the median of `runs` timings of `f`: on a shared machine the fastest is the
/// closest to the work itself, the median to what a user sees.
fn timings(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[runs / 2])
}

fn eta_compute_time() {
    println!(
        "What-if ETA, example organisation, change entering {START} (fastest / median of 21):"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let start: jiff::Timestamp = START.parse().expect("a valid instant");
    for file in EXAMPLES {
        let loaded = match gantry_spec::load(&root.join(file)) {
            Ok(loaded) => loaded,
            Err(diagnostics) => panic!("{file}: {diagnostics}"),
        };
        let zones = Engine::region_zones(&loaded.topology);
        let report = eta::eta(&loaded.plan, &zones, start).expect("the example finishes");
        let (fastest, median) = timings(21, || {
            std::hint::black_box(eta::eta(&loaded.plan, &zones, start).expect("finishes"));
        });
        println!(
            "  {:<24} {:>6.2} / {:>6.2} ms  {:>5} rounds  every region in {:>4.1} days ({} business days)",
            loaded.plan.pipeline,
            fastest.as_secs_f64() * 1000.0,
            median.as_secs_f64() * 1000.0,
            report.engine_steps,
            report.total.as_secs_f64() / 86_400.0,
            report.business_days
        );
    }
}

fn seeds_per_minute() {
    let seeds = 200;
    let report = batch(0, seeds, 1, false, &Options::default());
    let wall = report.wall.as_secs_f64();
    println!("Simulator, {seeds} seeds on one thread with faults on:");
    println!("  {:.0} seeds per minute per core", seeds as f64 * 60.0 / wall);
    println!(
        "  {:.0} simulated hours per real second ({} engine steps, {:.2} µs each)",
        report.simulated.as_secs_f64() / 3600.0 / wall,
        report.engine_steps,
        wall * 1e6 / report.engine_steps as f64
    );
    if !report.failures.is_empty() {
        println!("  {} seeds broke an invariant: {:?}", report.failures.len(), report.failures[0]);
    }
}

const ONE_PIPELINE: &str = r#"{
  "start": "2026-11-24T14:00:00Z", "until": "1h",
  "regions": [{"name": "r1", "time_zone": "America/New_York", "zones": 3, "boxes": 10},
              {"name": "r2", "time_zone": "Europe/Berlin", "zones": 3, "boxes": 10}],
  "pipelines": [{"name": "p", "gamma": true, "waves": [["r1"], ["r2"]]}]
}"#;

/// 10,000 copies of the one-pipeline world, each its own service (so its own boxes).
fn many(
    count: usize,
) -> (Vec<gantry_model::Plan>, std::collections::BTreeMap<String, String>, jiff::Timestamp) {
    let parsed = scenario::parse(ONE_PIPELINE).expect("parses");
    let world = scenario::world(&parsed).expect("valid");
    let plans = (0..count)
        .map(|number| {
            let mut plan = world.plans[0].clone();
            plan.pipeline = format!("pipeline-{number}");
            plan.service = format!("service-{number}");
            plan
        })
        .collect();
    (plans, world.region_zones, parsed.start)
}

/// Ten healthy boxes of one pipeline, as their agent reports them.
fn boxes(pipeline: &str) -> Vec<BoxReport> {
    let base = Digest::of(b"base");
    (0..10)
        .map(|n| BoxReport {
            id: BoxId(format!("b{n}")),
            health: Health::Healthy,
            running: [(pipeline.to_string(), base)].into(),
            last_commands: Default::default(),
            in_progress: None,
            observed_at: None,
        })
        .collect()
}

fn engine_step_cost() {
    let (plans, zones, now) = many(10_000);
    let target = plans[0].stages[1].steps[0].targets[0].clone();
    let mut engine = Engine::new(plans, zones).expect("valid plans");
    engine.step(now, Input::ControllerStarted { epoch: 1 });
    let reports = boxes("pipeline-7");
    let mut round = 0;
    let (fastest, scoped) = timings(201, || {
        round += 1;
        let at = now + jiff::SignedDuration::from_secs(round);
        let input = Input::Fleet {
            service: "service-7".into(),
            target: target.clone(),
            observed_at: at,
            boxes: reports.clone(),
        };
        std::hint::black_box(engine.step(at, input));
    });
    let (_, global) = timings(21, || {
        round += 1;
        engine.step(now + jiff::SignedDuration::from_secs(1000 + round), Input::Tick);
    });
    println!("Engine with 10,000 pipelines (median; fastest in brackets), records reported:");
    println!(
        "  {scoped:>10.2?} ({fastest:.2?}) per step that concerns one pipeline (a box report)"
    );
    println!("  {global:>10.2?} per step that concerns all of them (a tick)");
}

/// Bytes the store writes per round when 10,000 boxes report (1,000 targets of ten boxes),
/// through the round driver and an in-memory store of bytes.
fn store_bytes() {
    println!("Store writes per round, 10,000 boxes reporting (1,000 targets of 10 boxes):");
    for count in [1_000, 10_000] {
        let (plans, zones, start) = many(count);
        let reporting: Vec<(String, String, gantry_model::Target)> = plans
            .iter()
            .flat_map(|plan| {
                let targets: std::collections::BTreeSet<gantry_model::Target> = plan
                    .stages
                    .iter()
                    .flat_map(|stage| &stage.steps)
                    .flat_map(|step| step.targets.iter().cloned())
                    .collect();
                targets.into_iter().map(|t| (plan.pipeline.clone(), plan.service.clone(), t))
            })
            .take(1_000)
            .collect();
        let fresh = move || Engine::new(plans, zones);
        let (mut driver, started) =
            Driver::start(MemoryStore::new(), fresh, 0, start, None).expect("starts");
        let first = driver.store().stats().record_bytes;
        let round = |driver: &mut Driver<MemoryStore>, at: jiff::Timestamp| {
            let inputs = reporting
                .iter()
                .map(|(pipeline, service, target)| Input::Fleet {
                    service: service.clone(),
                    target: target.clone(),
                    observed_at: at,
                    boxes: boxes(pipeline),
                })
                .collect();
            let committed = driver.round(at, inputs).expect("commits");
            (committed.record_bytes, driver.store().stats().record_writes)
        };
        let minute = jiff::SignedDuration::from_mins(1);
        let writes_before = driver.store().stats().record_writes;
        let (adopting, writes) = round(&mut driver, start + minute);
        let (steady, after) = round(&mut driver, start + minute * 2);
        println!(
            "  {count:>6} pipelines: start {:>6.1} MB ({} records); first reports {:>8} bytes ({} records: known-good adopted); then {:>4} bytes ({} records) per round",
            first as f64 / 1e6,
            started.round.commands.len() + writes_before as usize,
            adopting,
            writes - writes_before,
            steady,
            after - writes,
        );
    }
}
