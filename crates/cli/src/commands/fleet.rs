//! `gantry sample-service` (hidden): the sample service an artifact's hooks start, so a sample
//! artifact carries only its configuration, appspec.yml and hook scripts. The service and its
//! probe live in `gantry-fleet`; this module only routes.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(clap::Args)]
pub struct SampleServiceArgs {
    /// The service's configuration file (YAML: version, error_rate, added_latency_ms,
    /// crash_on_start, slow_start_ms).
    #[arg(long, required_unless_present = "probe")]
    config: Option<PathBuf>,
    /// The loopback port to serve on (or to probe).
    #[arg(long)]
    port: u16,
    /// Instead of serving, wait until the service on --port answers /health with 200.
    #[arg(long)]
    probe: bool,
    /// With --probe: give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn sample_service(args: SampleServiceArgs) -> anyhow::Result<ExitCode> {
    if args.probe {
        let probe = gantry_fleet::health::HealthProbe {
            path: "/health".into(),
            port: args.port,
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        };
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        return match gantry_fleet::health::wait_healthy("127.0.0.1", &probe, deadline) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(reason) => {
                eprintln!("error: {reason}");
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let path = args.config.expect("clap requires --config without --probe");
    let config = gantry_fleet::sample::SampleConfig::load(&path)?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    eprintln!("sample service {} on http://{address}", config.version);
    gantry_fleet::sample::serve(config, address)
        .with_context(|| format!("serving {}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}
