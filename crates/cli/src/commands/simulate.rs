//! `gantry simulate` and `gantry eta`: the seeded fleet simulator, and the what-if ETA of a
//! pipeline file computed by the engine under a virtual clock.

use std::path::PathBuf;
use std::process::ExitCode;

pub use gantry_sim::cli::{SimulateArgs, run};

#[derive(clap::Args)]
pub struct EtaArgs {
    /// Pipeline definition. Defaults to the example organisation's cart-service config
    /// pipeline.
    pub file: Option<PathBuf>,
    /// When the change enters the pipeline, e.g. `2026-11-23T14:00:00Z`; defaults to now.
    #[arg(long)]
    pub start: Option<jiff::Timestamp>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = gantry_sim::cli::Format::Text)]
    pub output: gantry_sim::cli::Format,
}

/// Expands the pipeline and asks the engine when a change entering at `start` reaches every
/// stage and region on an ideal fleet, with the pipeline's bakes, windows and holidays.
pub fn eta(args: EtaArgs) -> anyhow::Result<ExitCode> {
    let file = args.file.unwrap_or_else(|| PathBuf::from(super::pipelines::EXAMPLE_PIPELINE));
    let loaded = match gantry_spec::load(&file) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let zones = gantry_engine::Engine::region_zones(&loaded.topology);
    // Now, to the second: a what-if needs no nanoseconds.
    let start = args.start.unwrap_or_else(|| {
        let now = jiff::Timestamp::now();
        now.round(jiff::Unit::Second).unwrap_or(now)
    });
    // Reading the time-zone database is I/O, not the computation being timed.
    for zone in zones.values() {
        let _ = jiff::tz::TimeZone::get(zone);
    }
    let started = std::time::Instant::now();
    let eta = gantry_sim::eta::eta(&loaded.plan, &zones, start)?;
    gantry_sim::cli::print_eta(&loaded.plan.pipeline, &eta, started.elapsed(), args.output)
}
