//! `gantry simulate`: its arguments and what it prints. The `gantry` binary routes here
//! (`commands::simulate` re-exports [`SimulateArgs`] and [`run`]).
//!
//! - `gantry simulate` runs a short batch of seeds, each twice, and prints throughput, simulated
//!   time and "sometimes" coverage; any failure prints its seed.
//! - `gantry simulate --seeds N [--first S]` runs more.
//! - `gantry simulate --seed S` replays one seed and prints its whole trace.
//! - `gantry simulate --scenario FILE [-o json]` runs a scripted scenario and prints the
//!   engine's decisions with their reasons.
//!
//! Data goes to stdout, progress and diagnostics to stderr; the exit status is non-zero when an
//! invariant broke or a seed was not deterministic.

use std::process::ExitCode;
use std::time::Instant;

use crate::{Options, batch, run, scenario};

/// Seeds in a plain `gantry simulate`: about a minute on two cores in a debug build.
pub const SHORT_BATCH: u64 = 200;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = SHORT_BATCH)]
    pub seeds: u64,
    /// The first seed of the batch.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Replay one seed and print its full trace.
    #[arg(long, conflicts_with_all = ["seeds", "first", "scenario"])]
    pub seed: Option<u64>,
    /// Run a scripted scenario (JSON) and print the engine's timeline.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<std::path::PathBuf>,
    /// What-if ETA for the first pipeline of a scenario file: when a change entering at
    /// `--start` (default: the scenario's start) reaches each stage and region.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    pub eta: Option<std::path::PathBuf>,
    /// With `--eta`: when the change enters, e.g. `2026-11-27T21:00:00Z`.
    #[arg(long, requires = "eta")]
    pub start: Option<jiff::Timestamp>,
    /// Worker threads; defaults to the number of cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run each seed once instead of twice (skips the determinism check).
    #[arg(long)]
    pub once: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.scenario {
        return run_scenario(path, args.output);
    }
    if let Some(path) = &args.eta {
        return run_eta(path, args.start, args.output);
    }
    if let Some(seed) = args.seed {
        return replay(seed, args.output);
    }
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    eprintln!(
        "simulating seeds {}..{} on {threads} thread(s)",
        args.first,
        args.first + args.seeds
    );
    let report = batch(args.first, args.seeds, threads, !args.once, &Options::default());
    let seconds = report.wall.as_secs_f64().max(1e-9);
    let speedup = report.simulated.as_secs_f64() / seconds;
    let missing = report.coverage.missing();
    if args.output == Format::Json {
        let failures: Vec<serde_json::Value> = report
            .failures
            .iter()
            .map(|(seed, v)| serde_json::json!({"seed": seed, "invariant": v.invariant, "at": v.at.to_string(), "detail": v.detail}))
            .collect();
        let json = serde_json::json!({
            "seeds": report.seeds,
            "seconds": seconds,
            "seeds_per_second": report.seeds as f64 / seconds,
            "engine_steps": report.engine_steps,
            "simulated_hours": report.simulated.as_secs_f64() / 3600.0,
            "simulated_seconds_per_real_second": speedup,
            "coverage": report.coverage.counts,
            "coverage_missing": missing,
            "failures": failures,
            "nondeterministic": report.nondeterministic,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "{} seeds in {seconds:.1} s: {:.1} seeds/s ({:.1} per core), {} engine steps, {:.0} simulated hours ({speedup:.0}x real time)",
            report.seeds,
            report.seeds as f64 / seconds,
            report.seeds as f64 / seconds / threads as f64,
            report.engine_steps,
            report.simulated.as_secs_f64() / 3600.0,
        );
        println!("coverage (\"sometimes\" counters):\n{}", report.coverage);
        if !missing.is_empty() {
            println!("never reached: {}", missing.join(", "));
        }
        for (seed, violation) in &report.failures {
            println!(
                "FAILED seed {seed}: {} at {}: {} (replay: gantry simulate --seed {seed})",
                violation.invariant, violation.at, violation.detail
            );
        }
        for seed in &report.nondeterministic {
            println!("NONDETERMINISTIC seed {seed}: two runs gave different traces");
        }
    }
    let clean = report.failures.is_empty() && report.nondeterministic.is_empty();
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn replay(seed: u64, format: Format) -> anyhow::Result<ExitCode> {
    let options = Options { keep_trace: true, ..Options::default() };
    let started = Instant::now();
    let report = run::run(seed, &options);
    let elapsed = started.elapsed();
    let again = run::run(seed, &options);
    let deterministic = again.trace_hash == report.trace_hash;
    if format == Format::Json {
        let json = serde_json::json!({
            "seed": seed,
            "world": report.world,
            "trace": report.trace,
            "timeline": report.timeline,
            "violations": report.violations.iter().map(|v| serde_json::json!({"invariant": v.invariant, "at": v.at.to_string(), "detail": v.detail})).collect::<Vec<_>>(),
            "trace_hash": format!("{:016x}", report.trace_hash),
            "deterministic": deterministic,
            "coverage": report.coverage.counts,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for line in &report.trace {
            println!("{line}");
        }
        println!(
            "seed {seed}: {} engine steps, {} simulated in {:.2} s, trace {:016x}{}",
            report.engine_steps,
            report.simulated,
            elapsed.as_secs_f64(),
            report.trace_hash,
            if deterministic { " (same on a second run)" } else { "" }
        );
        for violation in &report.violations {
            println!("VIOLATION {} at {}: {}", violation.invariant, violation.at, violation.detail);
        }
        if !deterministic {
            println!("NONDETERMINISTIC: a second run gave trace {:016x}", again.trace_hash);
        }
    }
    Ok(if report.violations.is_empty() && deterministic {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_scenario(path: &std::path::Path, format: Format) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let parsed =
        scenario::parse(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let report =
        scenario::run(&parsed).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    if format == Format::Json {
        let json = serde_json::json!({
            "timeline": report.timeline,
            "violations": report.violations.iter().map(|v| serde_json::json!({"invariant": v.invariant, "at": v.at.to_string(), "detail": v.detail})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for line in &report.timeline {
            println!("{line}");
        }
        for violation in &report.violations {
            println!("VIOLATION {} at {}: {}", violation.invariant, violation.at, violation.detail);
        }
    }
    Ok(if report.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn run_eta(
    path: &std::path::Path,
    start: Option<jiff::Timestamp>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let parsed =
        scenario::parse(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let world =
        scenario::world(&parsed).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let plan =
        world.plans.first().ok_or_else(|| anyhow::anyhow!("{}: no pipeline", path.display()))?;
    let started = Instant::now();
    let eta = crate::eta::eta(plan, &world.region_zones, start.unwrap_or(parsed.start))?;
    print_eta(&plan.pipeline, &eta, started.elapsed(), format)
}

/// Prints an ETA: when the change passes each stage and finishes each region, and its longest
/// waits; `compute` is how long working it out took (to stderr).
pub fn print_eta(
    pipeline: &str,
    eta: &crate::eta::Eta,
    compute: std::time::Duration,
    format: Format,
) -> anyhow::Result<ExitCode> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(eta)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{pipeline}: a change entering at {} reaches every region at {} ({:.1} days, {} business days)",
        eta.start,
        eta.finish,
        eta.total.as_secs_f64() / 86_400.0,
        eta.business_days
    );
    println!("stages:");
    for (stage, at) in &eta.stages {
        println!("  {stage:<16} passed {at}");
    }
    println!("regions, first done first:");
    let mut regions: Vec<(&String, &jiff::Timestamp)> = eta.regions.iter().collect();
    regions.sort_by_key(|(region, at)| (**at, *region));
    for (region, at) in regions {
        println!("  {region:<16} done   {at}");
    }
    println!("largest waits:");
    for wait in eta.waits.iter().take(5) {
        println!("  {:>6.1} h  {}", wait.hours, wait.what);
    }
    eprintln!("computed in {:.1} ms", compute.as_secs_f64() * 1000.0);
    Ok(ExitCode::SUCCESS)
}
