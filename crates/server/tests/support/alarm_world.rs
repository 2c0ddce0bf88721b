//! A controller with its alarm loop, a real HTTP `/metrics` endpoint per box whose fault counter
//! jumps when the box installs a bad artifact, and simulated agents speaking the agent protocol
//! over real HTTP: shared by the alarm tests and the alarm benchmark (`#[path]`-included).
//!
//! The build service's part is played by the test: it hands the engine an artifact through the
//! same `Controller::submit` the build loop uses. Everything after that is the controller's own
//! path — scrape, evaluate, submit, round, commit, queue, long-poll.

#![allow(dead_code, reason = "each including binary uses part of the harness")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gantry_engine::Input;
use gantry_engine::artifact::{ArtifactReady, Commit};
use gantry_model::{Digest, Timestamp};
use gantry_server::server::{self, Config, Controller};
use serde_json::{Value, json};

/// The pipeline the world runs.
pub const PIPELINE: &str = "shop";
/// Its rollback alarm: the fault ratio over 10-second periods, scraped from every box.
pub const ALARM: &str = "Shop_Fault_Rate";
/// Requests each box's counter grows by per scrape.
pub const REQUESTS_PER_SCRAPE: u64 = 20;
/// The share of requests a box running a bad artifact fails.
pub const BAD_FAULT_RATE: f64 = 0.5;
/// How long installing takes a simulated box before it reports the outcome: longer than the
/// other boxes' report cycle, so the target's snapshot the controller builds (stamped with its
/// oldest box report) is newer than the command.
pub const INSTALL_TIME: Duration = Duration::from_millis(1500);

pub const TOPOLOGY: &str = "
regions:
  - name: east
    traffic: 100
    time_zone: UTC
    boxes: 2
    zones:
      - { name: east-a }
";

/// One wave of one zone: a one-box step (one box of two), then the zone; bakes of seconds with
/// data points of the scraped request counter. The one box bakes for longer than two of the
/// alarm's 10-second periods, so a breach on it is seen before its bake ends.
pub const PIPELINE_FILE: &str = r#"
pipeline: shop
service: shop
team: shop-team
kind: code
topology: topology.yaml
sources:
  - repository: file:///nowhere/shop.git
    branch: main
build:
  command: "true"
  outputs: [out]
  network: false
  timeout: 1m
code_review: optional
waves:
  - name: wave-1
    rest: true
    bake: { duration: 2s, data_points: { requests: 0, sample_requests_total: 40 } }
deployment:
  one_box_percent: 50
  minimum_healthy_hosts: { type: HOST_COUNT, value: 1 }
  batch_size: { type: HOST_COUNT, value: 1 }
  rollback_batch_size: { type: HOST_COUNT, value: 1 }
  health_check_timeout: 30s
  hook_timeout: 1m
  auto_rollback: true
bake:
  one_box: { duration: 25s, data_points: { requests: 0, sample_requests_total: 40 } }
  first_zone: { duration: 2s, data_points: { requests: 0, sample_requests_total: 40 } }
  later_zones: { duration: 2s, data_points: { requests: 0, sample_requests_total: 40 } }
  wave: { duration: 2s, data_points: { requests: 0, sample_requests_total: 40 } }
alarms:
  definitions:
    Shop_Fault_Rate:
      metric:
        metric: sample_faults_total
        divide_by: sample_requests_total
        statistic: Sum
        period: 10s
        evaluation_periods: 1
        comparison: GreaterThanThreshold
        threshold: 0.05
  rollback: [Shop_Fault_Rate]
time_windows:
  allow:
    - cron: "* * * * *"
"#;

/// Writes the world's organisation under `into`.
pub fn write_organisation(into: &Path) -> std::path::PathBuf {
    let organisation = into.join("organisation");
    std::fs::create_dir_all(&organisation).unwrap();
    std::fs::write(organisation.join("topology.yaml"), TOPOLOGY).unwrap();
    std::fs::write(organisation.join("shop.yaml"), PIPELINE_FILE).unwrap();
    organisation
}

/// One box's counters as its `/metrics` shows them.
#[derive(Debug, Default)]
pub struct BoxMetrics {
    requests: u64,
    faults: f64,
    pub fault_rate: f64,
    /// When the fault rate last went up: the breach.
    pub breached_at: Option<Instant>,
}

/// A real HTTP endpoint serving `/<box>/metrics` for every box, in the Prometheus text format.
pub struct MetricsEndpoint {
    pub url: String,
    pub boxes: Arc<Mutex<BTreeMap<String, BoxMetrics>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    address: std::net::SocketAddr,
}

impl MetricsEndpoint {
    pub fn start() -> MetricsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let boxes: Arc<Mutex<BTreeMap<String, BoxMetrics>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (boxes, stop) = (boxes.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        answer(stream, &boxes);
                    }
                }
            })
        };
        MetricsEndpoint {
            url: format!("http://{address}"),
            boxes,
            stop,
            thread: Some(thread),
            address,
        }
    }

    pub fn url_of(&self, box_id: &str) -> String {
        format!("{}/{box_id}/metrics", self.url)
    }

    /// Sets a box's fault rate (the jump is the breach).
    pub fn set_fault_rate(&self, box_id: &str, rate: f64) {
        let mut boxes = self.boxes.lock().unwrap();
        let metrics = boxes.entry(box_id.to_string()).or_default();
        if rate > metrics.fault_rate {
            metrics.breached_at = Some(Instant::now());
        }
        metrics.fault_rate = rate;
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(stream: TcpStream, boxes: &Mutex<BTreeMap<String, BoxMetrics>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let box_id = path.trim_start_matches('/').trim_end_matches("/metrics").to_string();
    let body = {
        let mut boxes = boxes.lock().unwrap();
        let metrics = boxes.entry(box_id).or_default();
        metrics.requests += REQUESTS_PER_SCRAPE;
        metrics.faults += REQUESTS_PER_SCRAPE as f64 * metrics.fault_rate;
        format!(
            "# TYPE sample_requests counter\nsample_requests_total {}\n\
             # TYPE sample_faults counter\nsample_faults_total {}\n",
            metrics.requests,
            metrics.faults.floor()
        )
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A command as a box received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: u64,
    pub kind: String,
    pub artifact: String,
    pub at: Timestamp,
    pub instant: Instant,
}

/// What one simulated agent has done.
#[derive(Debug, Default)]
pub struct AgentLog {
    pub running: Option<String>,
    pub received: Vec<Received>,
    /// Every artifact the box ever ran.
    pub ran: BTreeSet<String>,
}

/// A controller serving real HTTP on loopback, with its round loop and alarm loop.
pub struct World {
    pub temp: tempfile::TempDir,
    pub controller: Arc<Controller>,
    pub url: String,
    pub admin: String,
    pub endpoint: Arc<MetricsEndpoint>,
    pub agents: BTreeMap<String, Arc<Mutex<AgentLog>>>,
    /// Artifacts whose boxes fail `BAD_FAULT_RATE` of requests.
    pub bad: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    alarms: Option<gantry_server::alarms::AlarmThread>,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub fn client(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

impl World {
    /// Starts the controller with the world's organisation and `boxes` boxes that already run
    /// `known_good` (adopted as the target's known-good artifact).
    pub fn start(boxes: usize, known_good: &str) -> World {
        let temp = tempfile::tempdir().unwrap();
        let organisation = write_organisation(temp.path());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = Config::new(temp.path().join("data"), "127.0.0.1:0".parse().unwrap());
        let (controller, opened) = server::open(&config, Timestamp::now()).unwrap();
        let admin = std::fs::read_to_string(opened.bootstrap_token.unwrap()).unwrap();
        let rounds = server::start_rounds(controller.clone(), Some(organisation)).unwrap();
        let alarms = gantry_server::alarms::start(controller.clone(), Default::default()).unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server::serve(controller.clone(), listener, rounds, async move {
            let _ = stopped.await;
        }));
        let mut world = World {
            temp,
            controller,
            url,
            admin: admin.trim().to_string(),
            endpoint: Arc::new(MetricsEndpoint::start()),
            agents: BTreeMap::new(),
            bad: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            alarms: Some(alarms),
            runtime: Some(runtime),
            shutdown: Some(shutdown),
        };
        world.wait_for("the pipeline to load", Duration::from_secs(30), |world| {
            world.get(&format!("/api/v1/pipelines/{PIPELINE}")).0 == 200
        });
        for n in 0..boxes {
            world.add_agent(&format!("box-{n}"), Some(known_good.to_string()));
        }
        world
    }

    /// The controller's own metrics, as text.
    pub fn metrics(&self) -> String {
        client(Duration::from_secs(10))
            .get(format!("{}/metrics", self.url))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let response = client(Duration::from_secs(10))
            .get(format!("{}{path}", self.url))
            .header("authorization", &format!("Bearer {}", self.admin))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.into_body().read_json().unwrap_or(Value::Null))
    }

    fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let response = client(Duration::from_secs(10))
            .post(format!("{}{path}", self.url))
            .header("authorization", &format!("Bearer {token}"))
            .send_json(body);
        match response {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.into_body().read_json().unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Starts a simulated agent for `box_id` in zone east-a, running `running`.
    pub fn add_agent(&mut self, box_id: &str, running: Option<String>) {
        let (status, answer) = self.post(
            &self.admin,
            "/api/v1/tokens",
            json!({"kind": "agent", "box_id": box_id, "service": "shop"}),
        );
        assert_eq!(status, 201, "{answer}");
        let token = answer["token"].as_str().unwrap().to_string();
        let log = Arc::new(Mutex::new(AgentLog {
            running: running.clone(),
            ran: running.iter().cloned().collect(),
            ..AgentLog::default()
        }));
        self.agents.insert(box_id.to_string(), log.clone());
        let agent = SimAgent {
            box_id: box_id.to_string(),
            token,
            url: self.url.clone(),
            metrics_url: self.endpoint.url_of(box_id),
            log,
            endpoint: self.endpoint.clone(),
            bad: self.bad.clone(),
            stop: self.stop.clone(),
        };
        self.threads.push(std::thread::spawn(move || agent.run()));
    }

    /// Hands the engine a new artifact of the pipeline, as the build loop does.
    pub fn artifact_ready(&self, digest: &Digest, sequence: u64, previous: Option<u64>) {
        self.controller.submit([Input::ArtifactReady {
            pipeline: PIPELINE.into(),
            artifact: ArtifactReady {
                digest: *digest,
                sequence,
                previous,
                commits: vec![Commit {
                    id: format!("commit-{sequence}"),
                    author: "alex".into(),
                    approvers: vec!["sam".into()],
                }],
                packages: Vec::new(),
                signature_verified: true,
            },
        }]);
    }

    pub fn wait_for(&self, what: &str, patience: Duration, done: impl Fn(&World) -> bool) {
        let deadline = Instant::now() + patience;
        while !done(self) {
            if Instant::now() >= deadline {
                let (_, pipeline) = self.get(&format!("/api/v1/pipelines/{PIPELINE}"));
                let (_, alarms) = self.get(&format!("/api/v1/pipelines/{PIPELINE}/alarms"));
                let audit = self.audit();
                let tail = &audit[audit.len().saturating_sub(30)..];
                panic!(
                    "timed out waiting for {what}\npipeline: {pipeline:#}\nalarms: {alarms:#}\n\
                     audit (last 30): {tail:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self, box_id: &str) -> std::sync::MutexGuard<'_, AgentLog> {
        self.agents[box_id].lock().unwrap()
    }

    /// The audit log's records, whole.
    pub fn audit(&self) -> Vec<Value> {
        let mut records = Vec::new();
        let mut after = 0;
        loop {
            let (_, page) = self.get(&format!("/api/v1/audit?after={after}&limit=1000"));
            let page_records = page["records"].as_array().cloned().unwrap_or_default();
            records.extend(page_records.iter().map(|r| r["record"].clone()));
            match page["next_after"].as_u64() {
                Some(next) => after = next,
                None => return records,
            }
        }
    }

    /// The one alarm's view in `region`.
    pub fn alarm(&self, region: &str) -> Value {
        let (_, alarms) = self.get(&format!("/api/v1/pipelines/{PIPELINE}/alarms"));
        alarms["alarms"]
            .as_array()
            .and_then(|alarms| {
                alarms.iter().find(|a| a["alarm"] == ALARM && a["region"] == region).cloned()
            })
            .unwrap_or(Value::Null)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        drop(self.alarms.take());
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// One box's agent over real HTTP: registers with its metrics URL, reports its whole state,
/// long-polls, and carries out each command id once (installing is instant; a bad artifact
/// raises its box's fault rate, as a bad change does).
struct SimAgent {
    box_id: String,
    token: String,
    url: String,
    metrics_url: String,
    log: Arc<Mutex<AgentLog>>,
    endpoint: Arc<MetricsEndpoint>,
    bad: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
}

impl SimAgent {
    fn run(self) {
        let base = format!("{}/api/v1/agent/boxes/{}", self.url, self.box_id);
        let auth = format!("Bearer {}", self.token);
        let target = json!({"environment": "prod", "region": "east", "zone": "east-a"});
        let mut epoch = 0;
        let mut outcomes: Vec<Value> = Vec::new();
        let mut seen: BTreeSet<u64> = BTreeSet::new();
        let mut registered = false;
        let agent = client(Duration::from_secs(10));
        while !self.stop.load(Ordering::SeqCst) {
            if !registered {
                let body = json!({"protocol_version": 1, "box_id": self.box_id, "target": target,
                                  "highest_epoch_seen": epoch, "metrics_url": self.metrics_url});
                match agent
                    .post(format!("{base}/register"))
                    .header("authorization", &auth)
                    .send_json(body)
                {
                    Ok(response) if response.status() == 200 => {
                        let answer: Value = response.into_body().read_json().unwrap();
                        epoch = epoch.max(answer["epoch"].as_u64().unwrap());
                        registered = true;
                    }
                    _ => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
            }
            let running = self.log.lock().unwrap().running.clone();
            let report = json!({
                "observed_at": Timestamp::now().to_string(),
                "highest_epoch_seen": epoch,
                "highest_command_id_seen": seen.iter().max().copied().unwrap_or(0),
                "pipelines": running.map(|digest| vec![json!({
                    "pipeline": PIPELINE, "running": digest, "health": "healthy",
                    "outcomes": outcomes,
                })]).unwrap_or_default(),
            });
            let _ = agent
                .post(format!("{base}/report"))
                .header("authorization", &auth)
                .send_json(report);
            let batch: Value = match agent
                .get(format!("{base}/commands?wait=1s"))
                .header("authorization", &auth)
                .call()
            {
                Ok(response) if response.status() == 200 => {
                    response.into_body().read_json().unwrap_or(Value::Null)
                }
                Ok(response) if response.status() == 404 => {
                    registered = false;
                    continue;
                }
                _ => continue,
            };
            let received_at = (Timestamp::now(), Instant::now());
            for command in batch["commands"].as_array().cloned().unwrap_or_default() {
                let id = command["id"].as_u64().unwrap();
                let command_epoch = command["epoch"].as_u64().unwrap();
                if command_epoch < epoch || !seen.insert(id) {
                    continue;
                }
                epoch = command_epoch;
                let artifact = command["artifact"].as_str().unwrap().to_string();
                let _ = agent
                    .post(format!("{base}/acknowledge"))
                    .header("authorization", &auth)
                    .send_json(json!({"command": id, "epoch": command_epoch}));
                std::thread::sleep(INSTALL_TIME);
                let rate =
                    if self.bad.lock().unwrap().contains(&artifact) { BAD_FAULT_RATE } else { 0.0 };
                self.endpoint.set_fault_rate(&self.box_id, rate);
                {
                    let mut log = self.log.lock().unwrap();
                    log.received.push(Received {
                        id,
                        kind: command["kind"].as_str().unwrap_or_default().to_string(),
                        artifact: artifact.clone(),
                        at: received_at.0,
                        instant: received_at.1,
                    });
                    log.running = Some(artifact.clone());
                    log.ran.insert(artifact);
                }
                outcomes.push(json!({"command": id, "epoch": command_epoch, "succeeded": true,
                                     "detail": "", "finished_at": Timestamp::now().to_string()}));
                if outcomes.len() > 16 {
                    outcomes.remove(0);
                }
            }
        }
    }
}
