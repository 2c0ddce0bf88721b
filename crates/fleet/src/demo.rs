//! `gantry demo`: Gantry's main job on one machine, as a story a reader can follow.
//!
//! [`Demo::start`] brings up a controller (`gantry server`, SQLite) with the demo organisation
//! (`examples/demo`: a topology of a pre-production environment and two regions of two zones,
//! a pipeline with bakes of seconds and an always-open window), a local fleet for all of it
//! ([`crate::local`]), traffic against every target, and a git repository holding the sample
//! service (`examples/sample-service`) that the pipeline builds from. [`run`] then tells the
//! story: a good change committed, built and deployed everywhere; a bad one (a higher error
//! rate, only where it is installed) caught at its one box and rolled back. Each step is a
//! [`Narrative`] value handed to the caller, which presents it.
//!
//! Everything the demo starts is owned by [`Demo`]: dropping it (the story ended, failed, or
//! the caller's stop flag was raised by Ctrl-C) stops the traffic, the fleet and the controller,
//! so no process outlives the demo.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Error;

/// The pipeline `examples/demo` defines.
pub const PIPELINE: &str = "sample-service";
/// The repository URL in `examples/demo/sample-service.yaml`, replaced by the demo's own.
pub const PLACEHOLDER_REPOSITORY: &str = "file:///gantry-demo/sample-service.git";
/// How long the controller may take to start and load the organisation.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long every box may take to register after the fleet is up (10 agents on two cores).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the controller may take to notice a commit and build it: it polls every few
/// seconds and the sample service's build only packs files.
const BUILD_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a good change may take to reach every box: four short bakes and one-box bakes of
/// 40 s, batches of one box, on two cores.
const EVERYWHERE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a bad change may take to be caught and rolled back at its one box: the alarm
/// needs two 10-second periods of scraped faults.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(180);
/// How often the demo asks the controller how things stand.
const POLL: Duration = Duration::from_millis(500);
/// Requests per second each traffic thread sends to its target's load balancer: enough for
/// the bakes' data points, little enough for two cores.
const TRAFFIC_PER_SECOND: u64 = 20;
/// The demo's reviewers: every change is approved by two team members other than its author
/// before it reaches the mainline (an author without a commit signature needs two).
const REVIEWERS: [&str; 2] = ["riley", "sam"];
/// The email the demo's commits are written under.
const AUTHOR_EMAIL: &str = "demo@gantry.invalid";
/// The branch changes are written and reviewed on before the mainline moves to them.
const WORK_BRANCH: &str = "work";
/// What the good change is, as the narrative tells it.
const GOOD_CHANGE: &str = "v2, a good change";
/// The error rate of the bad change, on the boxes that install it.
pub const BAD_ERROR_RATE: f64 = 0.5;

/// One thing the demo has to tell.
#[derive(Clone, Debug, PartialEq)]
pub enum Narrative {
    ControllerUp { url: String, data_dir: PathBuf },
    Isolation { builder_id: String, bubblewrap: bool },
    FleetUp { targets: usize, boxes: usize },
    PipelineLoaded { stages: usize },
    Registered { boxes: usize },
    Traffic { targets: usize },
    Committed { commit: String, what: String },
    Built { digest: String },
    Everywhere { digest: String, boxes: usize },
    RolledBack { digest: String, box_id: String, reason: String },
    NeverPromoted { digest: String },
    Stopping,
}

impl std::fmt::Display for Narrative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Narrative::ControllerUp { url, data_dir } => {
                write!(f, "controller up: API at {url} (SQLite in {})", data_dir.display())
            }
            Narrative::Isolation { builder_id, bubblewrap: true } => {
                write!(f, "builds run in the bubblewrap allow-list sandbox as {builder_id}")
            }
            Narrative::Isolation { builder_id, bubblewrap: false } => write!(
                f,
                "bubblewrap is missing: builds run in the weaker unshare isolation as {builder_id}, \
                 which the demo's trust root accepts (production policy would not)"
            ),
            Narrative::FleetUp { targets, boxes } => {
                write!(
                    f,
                    "fleet up: {boxes} boxes in {targets} targets, each behind its load balancer"
                )
            }
            Narrative::PipelineLoaded { stages } => write!(
                f,
                "pipeline {PIPELINE} loaded: {stages} stages, bakes of seconds, a window always open"
            ),
            Narrative::Registered { boxes } => {
                write!(f, "all {boxes} agents registered with the controller")
            }
            Narrative::Traffic { targets } => {
                write!(f, "traffic: {TRAFFIC_PER_SECOND} requests/s to each of {targets} targets")
            }
            Narrative::Committed { commit, what } => write!(
                f,
                "committed {commit}, approved by {} and {}, merged to main: {what}",
                REVIEWERS[0], REVIEWERS[1]
            ),
            Narrative::Built { digest } => write!(f, "built and signed artifact {digest}"),
            Narrative::Everywhere { digest, boxes } => {
                write!(f, "{digest} runs on all {boxes} boxes, in every region")
            }
            Narrative::RolledBack { digest, box_id, reason } => {
                write!(f, "{digest} rolled back at its one box {box_id}: {reason}")
            }
            Narrative::NeverPromoted { digest } => {
                write!(f, "{digest} never left its one box: no other box ever ran it")
            }
            Narrative::Stopping => write!(f, "stopping the traffic, the fleet and the controller"),
        }
    }
}

/// Where the demo runs from.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// The `gantry` binary every process runs.
    pub gantry: PathBuf,
    /// The repository's `examples/` directory (`demo/` and `sample-service/` under it).
    pub examples: PathBuf,
    /// The demo's working directory: controller data, fleet, repository, supply home.
    pub dir: PathBuf,
}

/// The two outcomes `gantry demo --once` must see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The good change's digest, once it ran on every box.
    pub good_everywhere: Option<String>,
    /// The bad change's digest, once it was rolled back at its one box.
    pub bad_rolled_back: Option<String>,
}

/// A controller, a fleet and traffic; stopped when dropped.
pub struct Demo {
    pub url: String,
    pub admin_token: String,
    pub repository: PathBuf,
    pub fleet_dir: PathBuf,
    pub boxes: usize,
    /// The repository's first commit: the pipeline's trusted base, where every artifact's
    /// commit range starts (the demo's trust root names it).
    pub trusted_base: String,
    server: Option<Child>,
    home: gantry_supply::home::Home,
    source: gantry_model::Source,
    reviewers: Vec<gantry_supply::keys::KeyPair>,
    traffic_stop: Arc<AtomicBool>,
    traffic: Vec<std::thread::JoinHandle<()>>,
}

fn io(what: impl std::fmt::Display, error: impl std::fmt::Display) -> Error {
    Error::Io(format!("{what}: {error}"))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(|e| io(to.display(), e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io(from.display(), e))? {
        let entry = entry.map_err(|e| io(from.display(), e))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| io(entry.path().display(), e))?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| io(target.display(), e))?;
        }
    }
    Ok(())
}

fn git(repository: &Path, args: &[&str]) -> Result<String, Error> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repository)
        .args(["-c", "user.name=Demo Developer", "-c"])
        .arg(format!("user.email={AUTHOR_EMAIL}"))
        .args(args)
        .output()
        .map_err(|e| io("running git (is it installed?)", e))?;
    if !output.status.success() {
        return Err(Error::Io(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The sample service's configuration with `error_rate` and `version` set.
fn service_config(version: &str, error_rate: f64) -> String {
    format!(
        "version: {version}\nerror_rate: {error_rate}\nadded_latency_ms: 0\ncrash_on_start: false\nslow_start_ms: 0\n"
    )
}

struct Api {
    url: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    fn get(&self, path: &str) -> Result<Value, Error> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.url))
            .header("authorization", &format!("Bearer {}", self.token))
            .call()
            .map_err(|e| io(format!("GET {path}"), e))?;
        if !response.status().is_success() {
            return Err(Error::Io(format!("GET {path}: {}", response.status())));
        }
        response.body_mut().read_json().map_err(|e| io(format!("GET {path}"), e))
    }
}

/// Waits for `check` to give a value, polling; `None` once `timeout` passed or `stop` is set.
fn wait_for<T>(
    stop: &AtomicBool,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let until = Instant::now() + timeout;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        if let Some(value) = check() {
            return Some(value);
        }
        std::thread::sleep(POLL);
    }
    None
}

impl Demo {
    fn api(&self) -> Api {
        Api {
            url: self.url.clone(),
            token: self.admin_token.clone(),
            agent: ureq::Agent::config_builder().http_status_as_error(false).build().into(),
        }
    }

    /// Brings everything up, telling each step to `say`. On failure, what started is stopped.
    pub fn start(config: &DemoConfig, say: &mut dyn FnMut(Narrative)) -> Result<Demo, Error> {
        let dir = std::path::absolute(&config.dir).map_err(|e| io(config.dir.display(), e))?;
        if dir.join("server").exists() {
            return Err(Error::Config(format!(
                "{} already holds a demo; remove it or pass another directory",
                dir.display()
            )));
        }
        let home = gantry_supply::home::Home::new(dir.join("supply"))
            .map_err(|e| Error::Config(e.to_string()))?;
        let supply = |e: gantry_supply::Error| Error::Config(e.to_string());
        home.keys().generate(jiff::Timestamp::now()).map_err(supply)?;
        let reviewers: Vec<gantry_supply::keys::KeyPair> = REVIEWERS
            .iter()
            .map(|_| gantry_supply::keys::KeyPair::generate())
            .collect::<Result<_, _>>()
            .map_err(supply)?;
        let member = |name: &str, public_key: String| gantry_supply::review::Member {
            name: name.into(),
            emails: vec![format!("{name}@gantry.invalid")],
            forge_logins: Vec::new(),
            public_key,
            ssh_keys: Vec::new(),
        };
        let mut members = vec![member(
            "dana",
            gantry_supply::keys::KeyPair::generate().map_err(supply)?.public_base64(),
        )];
        members[0].emails = vec![AUTHOR_EMAIL.into()];
        for (name, key) in REVIEWERS.iter().zip(&reviewers) {
            members.push(member(name, key.public_base64()));
        }
        home.write_keyring(&gantry_supply::review::Keyring { team: "demo".into(), members })
            .map_err(supply)?;
        let repository = dir.join("sample-service");
        let mut demo = Demo {
            url: String::new(),
            admin_token: String::new(),
            source: gantry_model::Source {
                repository: format!("file://{}", repository.display()),
                branch: "main".into(),
            },
            repository,
            fleet_dir: dir.join("fleet"),
            boxes: 0,
            trusted_base: String::new(),
            server: None,
            home,
            reviewers,
            traffic_stop: Arc::new(AtomicBool::new(false)),
            traffic: Vec::new(),
        };

        // The sample service's repository, with the service as it is in examples/.
        copy_tree(&config.examples.join("sample-service"), &demo.repository)?;
        std::fs::write(demo.repository.join("config/service.yml"), service_config("v1", 0.0))
            .map_err(|e| io(demo.repository.display(), e))?;
        git(&demo.repository, &["init", "--quiet", "--initial-branch=main"])?;
        git(&demo.repository, &["add", "."])?;
        git(&demo.repository, &["commit", "--quiet", "-m", "The sample service, v1"])?;
        git(&demo.repository, &["checkout", "--quiet", "-b", WORK_BRANCH])?;
        demo.trusted_base = git(&demo.repository, &["rev-parse", "HEAD"])?;

        // The organisation: examples/demo, building from that repository.
        let organisation = dir.join("organisation");
        copy_tree(&config.examples.join("demo"), &organisation)?;
        let pipeline_file = organisation.join("sample-service.yaml");
        let text =
            std::fs::read_to_string(&pipeline_file).map_err(|e| io(pipeline_file.display(), e))?;
        std::fs::write(
            &pipeline_file,
            text.replace(PLACEHOLDER_REPOSITORY, &demo.source.repository),
        )
        .map_err(|e| io(pipeline_file.display(), e))?;

        // The supply home's isolation, and the trust root every box verifies artifacts with.
        let sandbox = gantry_supply::sandbox::Sandbox::detect();
        let builder_id =
            gantry_supply::build::builder_id(gantry_supply::build::BuilderRole::Service, sandbox);
        let home = &demo.home;
        let trust = dir.join("trust.json");
        // The block list the boxes read: signed by the trust root and fresh for the longest
        // maximum age, since nothing republishes it while the demo runs.
        let blocks = dir.join("blocks.json");
        gantry_supply::operations::publish_blocks(
            home,
            &blocks,
            jiff::Timestamp::now(),
            gantry_supply::published_blocks::MAX_MAX_AGE_SECONDS,
        )
        .map_err(supply)?;
        let root = serde_json::json!({
            "trusted_keys": home.keys().trusted_keys_path(),
            "trust_root_key": home.keys().trust_root_public().map_err(supply)?,
            "block_list": blocks,
            "builder_ids": [builder_id],
            "repositories": [demo.source.repository],
            "trusted_bases": [demo.trusted_base],
        });
        std::fs::write(&trust, root.to_string()).map_err(|e| io(trust.display(), e))?;

        // The good change, reviewed and on the mainline before the controller first looks: its
        // artifact is the pipeline's first, with a commit range starting at the trusted base,
        // which every box's trust root names.
        let commit = demo.commit("v2", 0.0, "Sample service v2: a good change")?;
        say(Narrative::Committed { commit, what: GOOD_CHANGE.into() });

        // The controller.
        let data_dir = dir.join("server");
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| io("server.log", e))?;
        let mut server = Command::new(&config.gantry)
            .arg("server")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--organisation")
            .arg(&organisation)
            .arg("--trusted-base")
            .arg(format!("{PIPELINE}={}", demo.trusted_base))
            .env("GANTRY_HOME", home.root())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| io(format!("starting {}", config.gantry.display()), e))?;
        let stdout = server.stdout.take().expect("piped");
        let pid_file = dir.join(SERVER_PID_FILE);
        std::fs::write(&pid_file, server.id().to_string())
            .map_err(|e| io(pid_file.display(), e))?;
        demo.server = Some(server);
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(START_TIMEOUT).unwrap_or_default();
        demo.url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .ok_or_else(|| {
                Error::Io(format!(
                    "the controller did not start (see {}): {line:?}",
                    dir.join("server.log").display()
                ))
            })?
            .trim_end_matches('/')
            .to_string();
        let admin_file = data_dir.join("bootstrap-admin.token");
        demo.admin_token = std::fs::read_to_string(&admin_file)
            .map_err(|e| io(admin_file.display(), e))?
            .trim()
            .to_string();
        say(Narrative::ControllerUp { url: demo.url.clone(), data_dir });
        say(Narrative::Isolation {
            builder_id: builder_id.to_string(),
            bubblewrap: sandbox == gantry_supply::sandbox::Sandbox::Bubblewrap,
        });

        let api = demo.api();
        let never = AtomicBool::new(false);
        let stages = wait_for(&never, START_TIMEOUT, || {
            let view = api.get(&format!("/api/v1/pipelines/{PIPELINE}")).ok()?;
            Some(view["status"]["stages"].as_array().map_or(0, Vec::len))
        })
        .ok_or_else(|| {
            Error::Config(format!(
                "the controller did not load the demo organisation in {}; GET {}/api/v1/organisation says why",
                organisation.display(),
                demo.url
            ))
        })?;
        say(Narrative::PipelineLoaded { stages });

        // The fleet: every target of the demo topology.
        let topology = gantry_spec::load_topology_file(&organisation.join("topology.yaml"))
            .map_err(|d| Error::Config(d.to_string()))?;
        let slice = crate::local::Slice {
            environments: topology.environments.iter().map(|e| e.name.clone()).collect(),
            regions: topology.regions.iter().map(|r| r.name.clone()).collect(),
            boxes: None,
        };
        let targets = crate::local::targets(&topology, &slice)?;
        let launch = crate::local::Launch {
            gantry: config.gantry.clone(),
            dir: demo.fleet_dir.clone(),
            controller: demo.url.clone(),
            service: PIPELINE.into(),
            admin_token: demo.admin_token.clone(),
            trust,
            health_path: "/health".into(),
        };
        let record = crate::local::up(&launch, &targets)?;
        demo.boxes = record.targets.iter().map(|t| t.boxes.len()).sum();
        say(Narrative::FleetUp { targets: record.targets.len(), boxes: demo.boxes });

        wait_for(&never, REGISTER_TIMEOUT, || {
            let boxes = api.get("/api/v1/boxes").ok()?;
            let reported = boxes["boxes"]
                .as_array()?
                .iter()
                .filter(|b| b.get("reported_at").is_some())
                .count();
            (reported == demo.boxes).then_some(())
        })
        .ok_or_else(|| {
            Error::Io(format!(
                "not every one of the {} agents reported within {REGISTER_TIMEOUT:?}; see the agent.log files under {}",
                demo.boxes,
                demo.fleet_dir.display()
            ))
        })?;
        say(Narrative::Registered { boxes: demo.boxes });

        for target in &record.targets {
            let frontend = target.frontend;
            let stop = demo.traffic_stop.clone();
            demo.traffic.push(std::thread::spawn(move || traffic(frontend, &stop)));
        }
        say(Narrative::Traffic { targets: record.targets.len() });
        Ok(demo)
    }

    /// Both reviewers approve `revision`, in the supply home's review book.
    fn approve(&self, revision: &str) -> Result<(), Error> {
        let commit = git(&self.repository, &["rev-parse", revision])?;
        for key in &self.reviewers {
            gantry_supply::operations::approve(
                &self.home,
                key,
                &self.source,
                &commit,
                jiff::Timestamp::now(),
            )
            .map_err(|e| Error::Config(e.to_string()))?;
        }
        Ok(())
    }

    /// Writes a new configuration of the sample service on the work branch, has it reviewed,
    /// then moves the mainline to it; returns the short commit id.
    pub fn commit(&self, version: &str, error_rate: f64, message: &str) -> Result<String, Error> {
        std::fs::write(
            self.repository.join("config/service.yml"),
            service_config(version, error_rate),
        )
        .map_err(|e| io(self.repository.display(), e))?;
        git(&self.repository, &["commit", "--quiet", "-am", message])?;
        self.approve("HEAD")?;
        let commit = git(&self.repository, &["rev-parse", "HEAD"])?;
        git(&self.repository, &["update-ref", "refs/heads/main", &commit])?;
        git(&self.repository, &["rev-parse", "--short", "HEAD"])
    }

    /// The pipeline's newest artifact with a sequence above `after`, once the controller has
    /// one.
    fn wait_for_artifact(&self, after: u64, stop: &AtomicBool) -> Result<(String, u64), Error> {
        let api = self.api();
        wait_for(stop, BUILD_TIMEOUT, || {
            let view = api.get(&format!("/api/v1/pipelines/{PIPELINE}")).ok()?;
            let newest = view["artifacts"].as_array()?.first()?.clone();
            let sequence = newest["sequence"].as_u64()?;
            (sequence > after)
                .then(|| (newest["digest"].as_str().unwrap_or("").to_string(), sequence))
        })
        .ok_or_else(|| {
            Error::Io(format!(
                "the controller built no artifact of {PIPELINE} from {} within {BUILD_TIMEOUT:?}",
                self.repository.display()
            ))
        })
    }

    /// Every process the demo runs: the controller, and each balancer and agent of the fleet.
    pub fn processes(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.server.iter().map(Child::id).collect();
        if let Ok(record) = crate::local::FleetRecord::read(&self.fleet_dir) {
            pids.extend(crate::local::processes(&record));
        }
        pids
    }

    /// What each box last reported running for the pipeline.
    fn running(&self) -> Result<Vec<(String, Option<String>)>, Error> {
        self.boxes_running(|_| true)
    }

    /// What each production box runs. Pre-production keeps what passed it when production
    /// fails: only production boxes roll back.
    fn production_running(&self) -> Result<Vec<(String, Option<String>)>, Error> {
        self.boxes_running(|b| b["target"]["environment"] == gantry_spec::expand::PRODUCTION)
    }

    fn boxes_running(
        &self,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        let boxes = self.api().get("/api/v1/boxes")?;
        Ok(boxes["boxes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| keep(b))
            .map(|b| {
                (
                    b["box_id"].as_str().unwrap_or("").to_string(),
                    b["running"][PIPELINE].as_str().map(str::to_string),
                )
            })
            .collect())
    }

    /// Why `digest` failed, once a stage it was in failed: the stage's reason, which names
    /// the rollback alarm that fired (the engine's `failed: <target>: rollback alarm … in ALARM`).
    fn failure_of(&self, digest: &str) -> Option<String> {
        let view = self.api().get(&format!("/api/v1/pipelines/{PIPELINE}")).ok()?;
        view["status"]["stages"].as_array()?.iter().find_map(|stage| {
            let phase = stage["phase"].as_str()?;
            (stage["artifact"].as_str() == Some(digest) && phase.starts_with("failed"))
                .then(|| phase.trim_start_matches("failed: ").to_string())
        })
    }
}

/// Sends [`TRAFFIC_PER_SECOND`] requests a second to `frontend` until `stop`.
fn traffic(frontend: std::net::SocketAddr, stop: &AtomicBool) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let gap = Duration::from_millis(1000 / TRAFFIC_PER_SECOND);
    while !stop.load(Ordering::SeqCst) {
        let _ = agent.get(format!("http://{frontend}/")).call();
        std::thread::sleep(gap);
    }
}

/// What the demo leaves behind as evidence, written as it stops: the controller's audit log,
/// pipeline view and metrics in the demo directory, and each built-in balancer's event log in
/// its target's directory. Each box's agent keeps every revision it installed under
/// `agent/pipelines/PIPELINE/revisions/`.
/// The controller's process id, so whoever started the demo can stop it even if the demo dies.
pub const SERVER_PID_FILE: &str = "server.pid";
pub const AUDIT_FILE: &str = "audit.json";
pub const PIPELINE_FILE: &str = "pipeline.json";
pub const METRICS_FILE: &str = "server-metrics.txt";
pub const BALANCER_EVENTS_FILE: &str = "balancer-events.json";

impl Demo {
    /// Writes the evidence files; best effort, as the demo is stopping anyway.
    fn record_evidence(&self) {
        let Some(dir) = self.fleet_dir.parent() else { return };
        let api = self.api();
        for (path, file) in [
            ("/api/v1/audit", AUDIT_FILE),
            (&format!("/api/v1/pipelines/{PIPELINE}")[..], PIPELINE_FILE),
        ] {
            if let Ok(value) = api.get(path) {
                let _ = std::fs::write(dir.join(file), value.to_string());
            }
        }
        if let Ok(mut response) = api.agent.get(format!("{}/metrics", self.url)).call()
            && let Ok(text) = response.body_mut().read_to_string()
        {
            let _ = std::fs::write(dir.join(METRICS_FILE), text);
        }
        let Ok(record) = crate::local::FleetRecord::read(&self.fleet_dir) else { return };
        for target in &record.targets {
            if let Ok(events) = crate::builtin::BuiltInClient::new(target.admin).events() {
                let target_dir = self.fleet_dir.join(target.target.to_string().replace('/', "-"));
                let _ = std::fs::write(
                    target_dir.join(BALANCER_EVENTS_FILE),
                    serde_json::to_vec(&events).expect("events serialize"),
                );
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.traffic_stop.store(true, Ordering::SeqCst);
        if !self.url.is_empty() {
            self.record_evidence();
        }
        for thread in self.traffic.drain(..) {
            let _ = thread.join();
        }
        if self.fleet_dir.join(crate::local::RECORD_FILE).exists() {
            let _ = crate::local::down(&self.fleet_dir);
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// The whole story, until both outcomes happened, one failed, or `stop` is set.
pub fn run(
    config: &DemoConfig,
    stop: &AtomicBool,
    say: &mut dyn FnMut(Narrative),
) -> Result<Outcome, Error> {
    let demo = Demo::start(config, say)?;
    let result = story(&demo, stop, say);
    say(Narrative::Stopping);
    drop(demo);
    result
}

fn story(demo: &Demo, stop: &AtomicBool, say: &mut dyn FnMut(Narrative)) -> Result<Outcome, Error> {
    let mut outcome = Outcome::default();
    let (good, sequence) = demo.wait_for_artifact(0, stop)?;
    say(Narrative::Built { digest: good.clone() });
    wait_for(stop, EVERYWHERE_TIMEOUT, || {
        let running = demo.running().ok()?;
        running.iter().all(|(_, digest)| digest.as_deref() == Some(good.as_str())).then_some(())
    })
    .ok_or_else(|| {
        Error::Io(format!("{good} did not reach every box within {EVERYWHERE_TIMEOUT:?}"))
    })?;
    say(Narrative::Everywhere { digest: good.clone(), boxes: demo.boxes });
    outcome.good_everywhere = Some(good.clone());

    let commit = demo.commit("v3", BAD_ERROR_RATE, "Sample service v3: fails half its requests")?;
    say(Narrative::Committed {
        commit,
        what: format!(
            "v3, a bad change: {:.0}% of requests fail where it runs",
            BAD_ERROR_RATE * 100.0
        ),
    });
    let (bad, _) = demo.wait_for_artifact(sequence, stop)?;
    say(Narrative::Built { digest: bad.clone() });
    // Caught: the stage fails with the alarm as its reason; rolled back: every box runs the good
    // change again in production (beta passed it and keeps it). Meanwhile, every production
    // box seen running the bad change is noted.
    let mut seen_on = std::collections::BTreeSet::new();
    let mut failure = None;
    wait_for(stop, ROLLBACK_TIMEOUT, || {
        let running = demo.production_running().ok()?;
        for (id, digest) in &running {
            if digest.as_deref() == Some(bad.as_str()) {
                seen_on.insert(id.clone());
            }
        }
        if failure.is_none() {
            failure = demo.failure_of(&bad);
        }
        let back = running.iter().all(|(_, digest)| digest.as_deref() == Some(good.as_str()));
        (failure.is_some() && back).then_some(())
    })
    .ok_or_else(|| match &failure {
        None => Error::Io(format!("{bad} was not caught within {ROLLBACK_TIMEOUT:?}")),
        Some(reason) => Error::Io(format!(
            "{bad} failed ({reason}) but its boxes were not rolled back within {ROLLBACK_TIMEOUT:?}"
        )),
    })?;
    let reason = failure.unwrap_or_default();
    if seen_on.len() > 1 {
        return Err(Error::Io(format!("{bad} ran on {} boxes: {seen_on:?}", seen_on.len())));
    }
    let box_id = seen_on.into_iter().next().unwrap_or_else(|| "its one box".to_string());
    say(Narrative::RolledBack { digest: bad.clone(), box_id, reason });
    say(Narrative::NeverPromoted { digest: bad.clone() });
    outcome.bad_rolled_back = Some(bad);
    Ok(outcome)
}
