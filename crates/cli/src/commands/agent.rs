//! `gantry agent`: the host agent on one box, talking to the controller's HTTP API. The agent
//! itself lives in `gantry-agent` (and its load balancer side in `gantry-fleet`); this module
//! reads the arguments and starts it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use gantry_agent::agent::{Agent, AgentConfig};
use gantry_agent::http::HttpController;
use gantry_agent::lifecycle::Traffic;
use gantry_agent::verify::TrustRoot;
use gantry_fleet::balancer::{Backend, LoadBalancer};
use gantry_fleet::health::{DEFAULT_TIMEOUT, DEFAULT_UNHEALTHY_THRESHOLD, HealthProbe};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The agent's directory: its state file and one directory per pipeline.
    #[arg(long)]
    root: PathBuf,
    /// The controller, such as http://127.0.0.1:7700.
    #[arg(long)]
    controller: String,
    /// A file holding this box's agent token (issued with POST /api/v1/tokens).
    #[arg(long)]
    token_file: PathBuf,
    /// The box's trust root, `trust.json`: trusted build keys, builders, block list.
    #[arg(long)]
    trust: PathBuf,
    /// This box's name, as its token was issued for.
    #[arg(long)]
    box_id: String,
    #[arg(long)]
    environment: String,
    #[arg(long)]
    region: String,
    #[arg(long)]
    zone: Option<String>,
    #[arg(long)]
    cell: Option<String>,
    /// A variable added to every hook's environment, KEY=VALUE (repeatable).
    #[arg(long = "box-var", value_parser = parse_variable)]
    box_variables: Vec<(String, String)>,
    /// The box's load balancer: `builtin:ADMIN-ADDRESS` or `haproxy:SOCKET-PATH`.
    #[arg(long)]
    balancer: Option<String>,
    /// Where the box's service listens, as the load balancer reaches it.
    #[arg(long, requires = "balancer")]
    serve: Option<SocketAddr>,
    /// The health check path the agent waits on before registering the box.
    #[arg(long, default_value = "/health")]
    health_path: String,
    /// How long requests in flight may take to finish when the box is deregistered.
    #[arg(long, default_value_t = 5)]
    drain_seconds: u64,
    /// The box's service's Prometheus `/metrics` endpoint, which the controller scrapes for the
    /// pipeline's alarms and bake data points, such as http://127.0.0.1:8080/metrics.
    #[arg(long)]
    metrics_url: Option<String>,
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn traffic(args: &AgentArgs) -> anyhow::Result<Option<Box<dyn Traffic + Send>>> {
    let Some(spec) = &args.balancer else { return Ok(None) };
    let Some(serve) = args.serve else { bail!("--balancer needs --serve, the box's address") };
    let probe = HealthProbe {
        path: args.health_path.clone(),
        port: 0,
        interval: Duration::from_secs(1),
        timeout: DEFAULT_TIMEOUT,
        healthy_threshold: 2,
        unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
    };
    let balancer: Box<dyn LoadBalancer> = match spec.split_once(':') {
        Some(("builtin", address)) => Box::new(gantry_fleet::builtin::BuiltInClient::new(
            address.parse().with_context(|| format!("--balancer builtin:{address}"))?,
        )),
        Some(("haproxy", socket)) => {
            Box::new(gantry_fleet::haproxy::Haproxy::new(socket, probe.clone()))
        }
        _ => bail!("--balancer {spec:?}: use builtin:ADDRESS or haproxy:SOCKET"),
    };
    Ok(Some(Box::new(gantry_fleet::traffic::BalancedBox {
        balancer,
        backend: Backend { name: args.box_id.clone(), address: serve },
        probe,
        drain: Duration::from_secs(args.drain_seconds),
    })))
}

pub fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading the token file {}", args.token_file.display()))?;
    let trust = TrustRoot::load(&args.trust, &args.root)?;
    let traffic = traffic(&args)?;
    let config = AgentConfig {
        root: args.root.clone(),
        box_id: gantry_model::agent::BoxId(args.box_id.clone()),
        target: gantry_model::Target {
            environment: args.environment.clone(),
            region: args.region.clone(),
            zone: args.zone.clone(),
            cell: args.cell.clone(),
        },
        box_variables: args.box_variables.iter().cloned().collect::<BTreeMap<_, _>>(),
        metrics_url: args.metrics_url.clone(),
    };
    std::fs::create_dir_all(&args.root)
        .with_context(|| format!("creating {}", args.root.display()))?;
    let controller = HttpController::new(&args.controller, &token);
    let mut agent = Agent::start(config, trust, controller, traffic)?;
    eprintln!(
        "agent {} reporting to {}, {} pipeline(s) on the box, state in {}",
        args.box_id,
        args.controller,
        agent.observation().pipelines.len(),
        args.root.display()
    );
    // The agent's state is durable at every step, so any signal's default (ending the process)
    // is a safe way to stop it; a restarted agent knows what it was doing.
    agent.run(&AtomicBool::new(false));
    Ok(ExitCode::SUCCESS)
}
