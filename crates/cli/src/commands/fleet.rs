//! The local fleet's commands: `gantry fleet up|down|status`, and the hidden processes it runs —
//! `gantry load-balancer` (one built-in balancer) and `gantry sample-service` (the sample
//! service an artifact's hooks start, so a sample artifact carries only its configuration,
//! appspec.yml and hook scripts). Everything they do lives in `gantry-fleet`; this module only
//! routes.

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

#[derive(clap::Args)]
pub struct LoadBalancerArgs {
    /// Where clients send requests.
    #[arg(long, default_value = "127.0.0.1:0")]
    frontend: SocketAddr,
    /// The admin API agents register and deregister through.
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: SocketAddr,
    /// The path the balancer's health check probes on each box.
    #[arg(long, default_value = "/health")]
    health_path: String,
}

/// `gantry load-balancer` (hidden): one built-in balancer as a process, for the local fleet.
/// Prints `frontend http://A admin http://B` on its first line once it listens.
pub fn load_balancer(args: LoadBalancerArgs) -> anyhow::Result<ExitCode> {
    let probe = gantry_fleet::health::HealthProbe {
        path: args.health_path,
        port: 0,
        interval: Duration::from_millis(500),
        timeout: Duration::from_secs(2),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    };
    let balancer =
        gantry_fleet::builtin::BuiltInLoadBalancer::start(args.frontend, args.admin, probe)?;
    println!("frontend http://{} admin http://{}", balancer.frontend(), balancer.admin());
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}

#[derive(clap::Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(clap::Subcommand)]
enum FleetCommand {
    /// Start a local fleet for a slice of the topology: a load balancer per target, an agent
    /// per box, each box on its own loopback port.
    Up {
        /// The fleet's directory: fleet.json, and one directory per target and box.
        #[arg(long)]
        dir: PathBuf,
        /// The topology file.
        #[arg(long)]
        topology: PathBuf,
        /// Production regions to run (one target per zone), comma-separated.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// Pre-production environments to run (one target per region), comma-separated.
        #[arg(long, value_delimiter = ',')]
        environments: Vec<String>,
        /// Boxes per target (default: the topology's, else 2).
        #[arg(long)]
        boxes: Option<u32>,
        /// The controller the agents report to.
        #[arg(long)]
        controller: String,
        /// The service whose pipelines deploy to the boxes.
        #[arg(long, default_value = "sample-service")]
        service: String,
        /// An admin token's file, to issue each box its agent token.
        #[arg(long)]
        admin_token_file: PathBuf,
        /// The boxes' trust root (trust.json, see docs/agent.md).
        #[arg(long)]
        trust: PathBuf,
        #[arg(long, default_value = "/health")]
        health_path: String,
    },
    /// Stop every process of the fleet.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show each box: agent, service, and whether its load balancer sends it traffic.
    Status {
        #[arg(long)]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn fleet(args: FleetArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        FleetCommand::Up {
            dir,
            topology,
            regions,
            environments,
            boxes,
            controller,
            service,
            admin_token_file,
            trust,
            health_path,
        } => {
            let topology =
                gantry_spec::load_topology_file(&topology).map_err(|d| anyhow::anyhow!("{d}"))?;
            let slice = gantry_fleet::local::Slice { environments, regions, boxes };
            let targets = gantry_fleet::local::targets(&topology, &slice)?;
            let admin_token = std::fs::read_to_string(&admin_token_file)
                .with_context(|| format!("reading {}", admin_token_file.display()))?;
            let launch = gantry_fleet::local::Launch {
                gantry: std::env::current_exe()?,
                dir: dir.clone(),
                controller,
                service,
                admin_token,
                trust: std::path::absolute(&trust)?,
                health_path,
            };
            let record = gantry_fleet::local::up(&launch, &targets)?;
            for target in &record.targets {
                println!(
                    "{}  http://{}  {} box(es)",
                    target.target,
                    target.frontend,
                    target.boxes.len()
                );
            }
            eprintln!(
                "fleet up in {}; `gantry fleet down --dir {}` stops it",
                dir.display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Down { dir } => {
            let stopped = gantry_fleet::local::down(&dir)?;
            eprintln!("stopped {stopped} process(es)");
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Status { dir, json } => {
            let boxes = gantry_fleet::local::status(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&boxes)?);
            } else {
                let word = |b: bool, yes: &'static str, no: &'static str| if b { yes } else { no };
                for b in &boxes {
                    println!(
                        "{}  {}  port {}  agent {}  service {}  {}",
                        b.target,
                        b.box_id,
                        b.port,
                        word(b.agent, "running", "stopped"),
                        word(b.service, "running", "stopped"),
                        word(b.in_service, "in service", "out of service"),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
