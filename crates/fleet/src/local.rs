//! The local fleet, the embedded default: boxes are processes on this machine. Each target of a
//! slice of the topology gets a built-in load balancer process, and each of its boxes a
//! `gantry agent` process with its own directory and loopback port (the port its hooks start the
//! service on). `fleet.json` in the fleet's directory records every process, so `down` and
//! `status` work from another invocation.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gantry_model::Target;
use gantry_model::topology::Topology;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::balancer::LoadBalancer;

/// The most boxes a local fleet runs: each is an agent and a service process, and the machine
/// this runs on may have two cores.
pub const MAX_LOCAL_BOXES: u32 = 64;
/// Boxes per target when neither the command nor the topology says.
pub const DEFAULT_BOXES_PER_TARGET: u32 = 2;
/// How long a load balancer process may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `down` waits for the processes it killed to go.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The record's name in the fleet's directory.
pub const RECORD_FILE: &str = "fleet.json";

/// Which part of the topology to run.
#[derive(Clone, Debug, Default)]
pub struct Slice {
    /// Pre-production environments (one target per region each).
    pub environments: Vec<String>,
    /// Production regions (one target per zone each).
    pub regions: Vec<String>,
    /// Boxes per target; else the topology's count, else [`DEFAULT_BOXES_PER_TARGET`].
    pub boxes: Option<u32>,
}

/// The targets of `slice`, with their box counts.
pub fn targets(topology: &Topology, slice: &Slice) -> Result<Vec<(Target, u32)>, Error> {
    let mut out = Vec::new();
    for name in &slice.environments {
        let environment = topology.environment(name).ok_or_else(|| {
            Error::Config(format!("the topology has no pre-production environment {name:?}"))
        })?;
        for region in &environment.regions {
            out.push(Target {
                environment: name.clone(),
                region: region.clone(),
                zone: None,
                cell: None,
            });
        }
    }
    for name in &slice.regions {
        let region = topology
            .region(name)
            .ok_or_else(|| Error::Config(format!("the topology has no region {name:?}")))?;
        for zone in &region.zones {
            out.push(Target {
                environment: "prod".into(),
                region: name.clone(),
                zone: Some(zone.name.clone()),
                cell: None,
            });
        }
    }
    if out.is_empty() {
        return Err(Error::Config("the slice names no environment or region".into()));
    }
    let counted: Vec<(Target, u32)> = out
        .into_iter()
        .map(|target| {
            let boxes = slice
                .boxes
                .or_else(|| topology.boxes_per_target(&target))
                .unwrap_or(DEFAULT_BOXES_PER_TARGET)
                .max(1);
            (target, boxes)
        })
        .collect();
    let total: u32 = counted.iter().map(|(_, n)| n).sum();
    if total > MAX_LOCAL_BOXES {
        return Err(Error::Config(format!(
            "the slice has {total} boxes, more than the {MAX_LOCAL_BOXES} a local fleet runs; name fewer regions or pass --boxes"
        )));
    }
    Ok(counted)
}

/// One box of the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxRecord {
    pub box_id: String,
    pub agent_pid: u32,
    /// The loopback port the box's service listens on.
    pub port: u16,
    pub dir: PathBuf,
}

/// One target: its load balancer and boxes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub target: Target,
    pub balancer_pid: u32,
    pub frontend: SocketAddr,
    pub admin: SocketAddr,
    pub boxes: Vec<BoxRecord>,
}

/// `fleet.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetRecord {
    pub controller: String,
    pub targets: Vec<TargetRecord>,
}

impl FleetRecord {
    pub fn read(dir: &Path) -> Result<FleetRecord, Error> {
        let path = dir.join(RECORD_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::Io(format!("{}: {e}; is a fleet up in this directory?", path.display()))
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
    }

    fn write(&self, dir: &Path) -> Result<(), Error> {
        gantry_agent::write_json_atomically(&dir.join(RECORD_FILE), self)
            .map_err(|e| Error::Io(e.to_string()))
    }
}

/// What `up` needs besides the slice.
pub struct Launch {
    /// The `gantry` binary the processes run.
    pub gantry: PathBuf,
    pub dir: PathBuf,
    pub controller: String,
    /// The service whose pipelines deploy to the boxes (their agent tokens name it).
    pub service: String,
    /// An admin token, to issue each box its own agent token.
    pub admin_token: String,
    /// The boxes' trust root (`trust.json`).
    pub trust: PathBuf,
    /// The health check path the balancers and agents probe.
    pub health_path: String,
}

fn box_id(target: &Target, n: u32) -> String {
    format!("{}-{n}", target.to_string().replace('/', "-"))
}

fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Io(format!("no free port: {e}")))?;
    Ok(listener.local_addr().expect("bound").port())
}

/// Issues an agent token for `box_id` through the controller's API.
fn agent_token(launch: &Launch, box_id: &str) -> Result<String, Error> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).build(),
    );
    let mut response = agent
        .post(format!("{}/api/v1/tokens", launch.controller.trim_end_matches('/')))
        .header("authorization", &format!("Bearer {}", launch.admin_token.trim()))
        .send_json(
            serde_json::json!({"kind": "agent", "box_id": box_id, "service": launch.service}),
        )
        .map_err(|e| Error::Io(format!("the controller at {}: {e}", launch.controller)))?;
    let status = response.status();
    let body: serde_json::Value = response.body_mut().read_json().unwrap_or_default();
    match body["token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_string()),
        _ => Err(Error::Io(format!("issuing a token for {box_id}: {status} {body}"))),
    }
}

/// Starts a built-in balancer process; returns its pid and addresses once it listens.
fn start_balancer(launch: &Launch, dir: &Path) -> Result<(u32, SocketAddr, SocketAddr), Error> {
    let log =
        std::fs::File::create(dir.join("balancer.log")).map_err(|e| Error::Io(e.to_string()))?;
    let mut child = Command::new(&launch.gantry)
        .args(["load-balancer", "--health-path", &launch.health_path])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::Io(format!("starting {}: {e}", launch.gantry.display())))?;
    let stdout = child.stdout.take().expect("piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(START_TIMEOUT).unwrap_or_default();
    // `frontend http://A admin http://B`
    let addresses: Vec<SocketAddr> = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("http://"))
        .filter_map(|a| a.parse().ok())
        .collect();
    let [frontend, admin] = addresses[..] else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Balancer(format!("the load balancer did not start: {line:?}")));
    };
    Ok((child.id(), frontend, admin))
}

/// Brings the slice's fleet up under `launch.dir`. On any failure, stops what it started.
pub fn up(launch: &Launch, targets: &[(Target, u32)]) -> Result<FleetRecord, Error> {
    std::fs::create_dir_all(&launch.dir).map_err(|e| Error::Io(e.to_string()))?;
    if launch.dir.join(RECORD_FILE).exists() {
        return Err(Error::Config(format!(
            "a fleet is already up in {}; `gantry fleet down` it first",
            launch.dir.display()
        )));
    }
    let mut record = FleetRecord { controller: launch.controller.clone(), targets: Vec::new() };
    let result = up_into(launch, targets, &mut record);
    if let Err(error) = result {
        stop(&record);
        return Err(error);
    }
    record.write(&launch.dir)?;
    Ok(record)
}

fn up_into(
    launch: &Launch,
    targets: &[(Target, u32)],
    record: &mut FleetRecord,
) -> Result<(), Error> {
    let gantry = launch.gantry.display().to_string();
    for (target, count) in targets {
        let target_dir = launch.dir.join(target.to_string().replace('/', "-"));
        std::fs::create_dir_all(&target_dir).map_err(|e| Error::Io(e.to_string()))?;
        let (balancer_pid, frontend, admin) = start_balancer(launch, &target_dir)?;
        record.targets.push(TargetRecord {
            target: target.clone(),
            balancer_pid,
            frontend,
            admin,
            boxes: Vec::new(),
        });
        for n in 1..=*count {
            let id = box_id(target, n);
            let dir = target_dir.join(&id);
            std::fs::create_dir_all(&dir).map_err(|e| Error::Io(e.to_string()))?;
            std::fs::write(dir.join("agent.token"), agent_token(launch, &id)?)
                .map_err(|e| Error::Io(e.to_string()))?;
            let port = free_port()?;
            let log = std::fs::File::create(dir.join("agent.log"))
                .map_err(|e| Error::Io(e.to_string()))?;
            let mut command = Command::new(&launch.gantry);
            command
                .arg("agent")
                .arg("--root")
                .arg(dir.join("agent"))
                .args(["--controller", &launch.controller])
                .arg("--token-file")
                .arg(dir.join("agent.token"))
                .arg("--trust")
                .arg(&launch.trust)
                .args(["--box-id", &id, "--environment", &target.environment])
                .args(["--region", &target.region])
                .args(["--balancer", &format!("builtin:{admin}")])
                .args(["--serve", &format!("127.0.0.1:{port}")])
                .args(["--metrics-url", &format!("http://127.0.0.1:{port}/metrics")])
                .args(["--health-path", &launch.health_path])
                .arg("--box-var")
                .arg(format!("GANTRY_BOX_DIR={}", dir.display()))
                .arg("--box-var")
                .arg(format!("GANTRY_BOX_PORT={port}"))
                .arg("--box-var")
                .arg(format!("GANTRY_BIN={gantry}"));
            if let Some(zone) = &target.zone {
                command.args(["--zone", zone]);
            }
            let child = command
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| Error::Io(format!("starting an agent: {e}")))?;
            record.targets.last_mut().expect("pushed").boxes.push(BoxRecord {
                box_id: id,
                agent_pid: child.id(),
                port,
                dir,
            });
        }
    }
    Ok(())
}

/// Whether a process is alive (a zombie is not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
    }
}

/// The service process a box's hooks started, if they recorded one.
fn service_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("service.pid")).ok()?.trim().parse().ok()
}

/// Every process of the fleet: agents, the services their hooks started, balancers.
pub fn processes(record: &FleetRecord) -> Vec<u32> {
    let mut pids = Vec::new();
    for target in &record.targets {
        for b in &target.boxes {
            pids.push(b.agent_pid);
            pids.extend(service_pid(&b.dir));
        }
        pids.push(target.balancer_pid);
    }
    pids
}

fn stop(record: &FleetRecord) -> Vec<u32> {
    let pids = processes(record);
    for pid in &pids {
        if alive(*pid) {
            kill_now(*pid);
        }
    }
    let until = Instant::now() + STOP_TIMEOUT;
    while pids.iter().any(|pid| alive(*pid)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    pids.into_iter().filter(|pid| alive(*pid)).collect()
}

/// SIGKILL: agents are safe to kill at any moment (their state is durable), and services and
/// balancers hold nothing.
fn kill_now(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Stops every process of the fleet in `dir` and removes its record.
pub fn down(dir: &Path) -> Result<usize, Error> {
    let record = FleetRecord::read(dir)?;
    let left = stop(&record);
    if !left.is_empty() {
        return Err(Error::Io(format!("processes {left:?} did not stop")));
    }
    std::fs::remove_file(dir.join(RECORD_FILE)).map_err(|e| Error::Io(e.to_string()))?;
    Ok(processes(&record).len())
}

/// One line of `gantry fleet status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BoxStatus {
    pub target: String,
    pub box_id: String,
    pub agent: bool,
    pub service: bool,
    /// The target's balancer sends it traffic.
    pub in_service: bool,
    pub port: u16,
}

/// What runs, box by box.
pub fn status(dir: &Path) -> Result<Vec<BoxStatus>, Error> {
    let record = FleetRecord::read(dir)?;
    let mut out = Vec::new();
    for target in &record.targets {
        let healthy = if alive(target.balancer_pid) {
            crate::builtin::BuiltInClient::new(target.admin).healthy().unwrap_or_default()
        } else {
            Vec::new()
        };
        for b in &target.boxes {
            out.push(BoxStatus {
                target: target.target.to_string(),
                box_id: b.box_id.clone(),
                agent: alive(b.agent_pid),
                service: service_pid(&b.dir).is_some_and(alive),
                in_service: healthy.contains(&b.box_id),
                port: b.port,
            });
        }
    }
    Ok(out)
}
