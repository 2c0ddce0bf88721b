//! Decide durably, then act, across `kill -9`: a real `gantry server` running the example
//! organisation, simulated agents speaking real HTTP, and the server killed at named points and
//! at random ones. A target whose boxes run one artifact adopts it as known good; a box added
//! with nothing installed is repaired to it by a command the engine decides. Whatever the kills,
//! the run converges (every box runs the artifact), the new box sees exactly one command id for
//! its repair — counted on the agent's side, not de-duplicated away — and the audit chain
//! verifies.
//!
//! `GANTRY_CRASH_POINTS` sets how many random kills (default 20).

#[path = "../../server/tests/support/organisation.rs"]
mod organisation;
use organisation::example_organisation;

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The default number of random kills in the suite.
const DEFAULT_RANDOM_KILLS: u64 = 20;

/// A running `gantry server`, killed (SIGKILL) and reaped when dropped.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(data: &Path, organisation: &Path, port: u16) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["server", "--data-dir"])
            .arg(data)
            .arg("--organisation")
            .arg(organisation)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        ServerProcess { child, url }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// `(status, body)`, or `None` when the server could not be reached (it was killed).
fn call(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    wait: Duration,
) -> Option<(u16, Value)> {
    let agent = client(wait + Duration::from_secs(5));
    let url = format!("{url}{path}");
    let auth = format!("Bearer {token}");
    let response = match body {
        None if method == "GET" => agent.get(&url).header("authorization", &auth).call(),
        Some(body) => agent.post(&url).header("authorization", &auth).send_json(body),
        None => panic!("{method} needs a body"),
    };
    let response = response.ok()?;
    let status = response.status().as_u16();
    Some((status, response.into_body().read_json().unwrap_or(Value::Null)))
}

/// One box's agent, as the real one behaves toward the controller: it keeps the highest epoch
/// and every command id it has seen, refuses older epochs, carries out a command id once and
/// reports its outcome when it is sent again.
struct SimAgent {
    box_id: String,
    token: String,
    target: Value,
    pipeline: String,
    running: Option<String>,
    registered: bool,
    highest_epoch: u64,
    /// Every distinct command id this box received.
    seen: BTreeSet<u64>,
    /// Every command this box accepted, as `(id, epoch)`, in the order received.
    received: Vec<(u64, u64)>,
    outcomes: Vec<Value>,
}

impl SimAgent {
    fn report(&self) -> Value {
        json!({
            "observed_at": gantry_model::Timestamp::now().to_string(),
            "highest_epoch_seen": self.highest_epoch,
            "highest_command_id_seen": self.seen.iter().max().copied().unwrap_or(0),
            "pipelines": self.running.as_ref().map(|digest| vec![json!({
                "pipeline": self.pipeline, "running": digest, "health": "healthy",
                "outcomes": self.outcomes,
            })]).unwrap_or_default(),
        })
    }

    /// Registers if needed, reports, polls once, and carries out what it received. Returns
    /// false when the server was unreachable.
    fn step(&mut self, url: &str, wait: &str) -> bool {
        let base = format!("/api/v1/agent/boxes/{}", self.box_id);
        if !self.registered {
            let body = json!({"protocol_version": 1, "box_id": self.box_id, "target": self.target,
                              "highest_epoch_seen": self.highest_epoch,
                              "highest_command_id_seen": self.seen.iter().max().copied().unwrap_or(0)});
            match call(
                url,
                &self.token,
                "POST",
                &format!("{base}/register"),
                Some(body),
                Duration::ZERO,
            ) {
                Some((200, answer)) => {
                    self.highest_epoch = self.highest_epoch.max(answer["epoch"].as_u64().unwrap());
                    self.registered = true;
                }
                Some((503, _)) | None => return false,
                Some(other) => panic!("register {}: {other:?}", self.box_id),
            }
        }
        match call(
            url,
            &self.token,
            "POST",
            &format!("{base}/report"),
            Some(self.report()),
            Duration::ZERO,
        ) {
            Some((200, answer)) => {
                self.highest_epoch = self.highest_epoch.max(answer["epoch"].as_u64().unwrap())
            }
            Some((404, _)) => {
                self.registered = false;
                return true;
            }
            Some((503, _)) | None => return false,
            Some(other) => panic!("report {}: {other:?}", self.box_id),
        }
        let wait_for = Duration::from_secs(wait.trim_end_matches('s').parse().unwrap());
        let batch = match call(
            url,
            &self.token,
            "GET",
            &format!("{base}/commands?wait={wait}"),
            None,
            wait_for,
        ) {
            Some((200, batch)) => batch,
            Some((404, _)) => {
                self.registered = false;
                return true;
            }
            Some((503, _)) | None => return false,
            Some(other) => panic!("poll {}: {other:?}", self.box_id),
        };
        for command in batch["commands"].as_array().unwrap() {
            let (id, epoch) = (command["id"].as_u64().unwrap(), command["epoch"].as_u64().unwrap());
            if epoch < self.highest_epoch {
                continue; // A stale controller's command: refused.
            }
            self.highest_epoch = epoch;
            if !self.seen.insert(id) {
                continue; // Already carried out: its outcome is in every report.
            }
            self.received.push((id, epoch));
            if std::env::var_os("GANTRY_CRASH_TRACE").is_some() {
                eprintln!(
                    "{} received {id} epoch {epoch} kind {} pipeline {} target {} while running {:?}",
                    self.box_id,
                    command["kind"],
                    command["pipeline"],
                    command["target"],
                    self.running.as_deref().map(|r| &r[..15])
                );
            }
            let ack = json!({"command": id, "epoch": epoch});
            let _ = call(
                url,
                &self.token,
                "POST",
                &format!("{base}/acknowledge"),
                Some(ack),
                Duration::ZERO,
            );
            self.running = Some(command["artifact"].as_str().unwrap().to_string());
            self.outcomes
                .push(json!({"command": id, "epoch": epoch, "succeeded": true, "detail": "",
                                      "finished_at": gantry_model::Timestamp::now().to_string()}));
        }
        true
    }
}

struct World {
    _temp: tempfile::TempDir,
    data: PathBuf,
    organisation: PathBuf,
    server: Option<ServerProcess>,
    port: u16,
    admin: String,
    agents: Vec<SimAgent>,
}

impl World {
    fn new() -> World {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        let organisation = example_organisation(temp.path());
        let server = ServerProcess::start(&data, &organisation, 0);
        let port = server.port();
        let admin =
            std::fs::read_to_string(data.join("bootstrap-admin.token")).unwrap().trim().to_string();
        let loaded =
            gantry_spec::load(&organisation.join("services/checkout-api/code.yaml")).unwrap();
        let target = serde_json::to_value(&loaded.plan.stages[0].steps[0].targets[0]).unwrap();
        let artifact = gantry_model::Digest::of(b"checkout-api running before gantry").to_string();
        let mut agents = Vec::new();
        for (n, running) in
            [Some(artifact.clone()), Some(artifact.clone()), None].into_iter().enumerate()
        {
            let box_id = format!("box-{n}");
            let body = json!({"kind": "agent", "box_id": box_id, "service": "checkout-api"});
            let (status, answer) =
                call(&server.url, &admin, "POST", "/api/v1/tokens", Some(body), Duration::ZERO)
                    .unwrap();
            assert_eq!(status, 201, "{answer}");
            agents.push(SimAgent {
                box_id,
                token: answer["token"].as_str().unwrap().to_string(),
                target: target.clone(),
                pipeline: "checkout-api-code".into(),
                running,
                registered: false,
                highest_epoch: 0,
                seen: BTreeSet::new(),
                received: Vec::new(),
                outcomes: Vec::new(),
            });
        }
        World { _temp: temp, data, organisation, server: Some(server), port, admin, agents }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        drop(self.server.take());
    }

    fn restart(&mut self) {
        if std::env::var_os("GANTRY_CRASH_TRACE").is_some() {
            eprintln!("restart");
        }
        self.kill();
        self.server = Some(ServerProcess::start(&self.data, &self.organisation, self.port));
    }

    fn step_agents(&mut self, wait: &str) {
        let url = self.url();
        for agent in &mut self.agents {
            agent.step(&url, wait);
        }
    }

    fn converged(&self) -> bool {
        let first = &self.agents[0].running;
        self.agents.iter().all(|agent| agent.running.is_some() && &agent.running == first)
    }

    /// The commands committed for `box_id` and not yet taken by its long-poll.
    fn waiting(&self, box_id: &str) -> Vec<u64> {
        match call(
            &self.url(),
            &self.admin,
            "GET",
            &format!("/api/v1/boxes/{box_id}"),
            None,
            Duration::ZERO,
        ) {
            Some((200, detail)) => detail["waiting"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_u64().unwrap())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn check_outcome(&self) {
        assert!(self.converged(), "every box runs the target's artifact");
        let new_box = &self.agents[2];
        assert_eq!(
            new_box.seen.len(),
            1,
            "one command id for the repair, seen by the box: {:?}",
            new_box.seen
        );
        for agent in &self.agents[..2] {
            assert!(agent.seen.is_empty(), "{} needed nothing: {:?}", agent.box_id, agent.seen);
        }
        let (ok, stdout, stderr) =
            common::gantry(&["audit", "verify", "--data-dir", self.data.to_str().unwrap()]);
        assert!(ok, "the audit chain verifies: {stdout}{stderr}");
    }
}

fn until(world: &mut World, what: &str, done: impl Fn(&World) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(world) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        world.step_agents("0s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs until the empty box's repair is committed and queued, without the box taking it: the
/// two boxes' artifact becomes known good, and only the old boxes poll. Returns the repair's
/// command ids as the controller holds them.
fn commit_repair_undelivered(world: &mut World) -> Vec<u64> {
    let url = world.url();
    let mut committed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed.is_empty() {
        assert!(Instant::now() < deadline, "no repair was committed");
        for agent in &mut world.agents[..2] {
            agent.step(&url, "0s");
        }
        let new_box = &mut world.agents[2];
        // Registers and reports, but does not poll.
        let base = format!("/api/v1/agent/boxes/{}", new_box.box_id);
        if !new_box.registered {
            let body = json!({"protocol_version": 1, "box_id": new_box.box_id, "target": new_box.target,
                              "highest_epoch_seen": 0});
            let (status, _) = call(
                &url,
                &new_box.token,
                "POST",
                &format!("{base}/register"),
                Some(body),
                Duration::ZERO,
            )
            .unwrap();
            new_box.registered = status == 200;
        }
        let report = new_box.report();
        let _ = call(
            &url,
            &new_box.token,
            "POST",
            &format!("{base}/report"),
            Some(report),
            Duration::ZERO,
        );
        committed = world.waiting("box-2");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(world.agents[2].seen.is_empty(), "the box has not taken the command");
    committed
}

#[test]
fn killed_after_commit_before_delivery_the_same_command_is_delivered() {
    let mut world = World::new();
    let committed = commit_repair_undelivered(&mut world);
    world.restart();
    until(&mut world, "the repair", World::converged);
    assert_eq!(
        world.agents[2].seen.iter().copied().collect::<Vec<_>>(),
        committed,
        "the same id after the restart"
    );
    world.check_outcome();
}

#[test]
fn killed_in_the_middle_of_a_long_poll_and_at_random_points_it_converges() {
    let mut world = World::new();
    // A long-poll in flight when the server dies.
    let (url, agent) = (world.url(), std::mem::replace(&mut world.agents[0], placeholder()));
    let poller = std::thread::spawn(move || {
        let mut agent = agent;
        agent.step(&url, "20s");
        agent.step(&url, "20s");
        agent
    });
    std::thread::sleep(Duration::from_millis(300));
    world.restart();
    world.agents[0] = poller.join().unwrap();

    let kills: u64 = std::env::var("GANTRY_CRASH_POINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_RANDOM_KILLS);
    // A small deterministic generator: the kill points are the same every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..kills {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let steps = state % 4;
        for _ in 0..steps {
            world.step_agents("0s");
        }
        std::thread::sleep(Duration::from_millis(state % 150));
        world.restart();
    }
    until(&mut world, "convergence", World::converged);
    // And after the repair was carried out: nothing more is commanded, whatever the kills.
    for _ in 0..kills / 4 {
        for _ in 0..3 {
            world.step_agents("0s");
        }
        world.restart();
    }
    until(&mut world, "convergence after the repair", World::converged);
    for _ in 0..5 {
        world.step_agents("0s");
    }
    world.check_outcome();
}

fn placeholder() -> SimAgent {
    SimAgent {
        box_id: String::new(),
        token: String::new(),
        target: Value::Null,
        pipeline: String::new(),
        running: None,
        registered: false,
        highest_epoch: 0,
        seen: BTreeSet::new(),
        received: Vec::new(),
        outcomes: Vec::new(),
    }
}

/// The highest epoch and command id any of `agents` has seen.
fn highest_seen(agents: &[SimAgent]) -> (u64, u64) {
    let epoch = agents.iter().map(|agent| agent.highest_epoch).max().unwrap_or(0);
    let id = agents.iter().flat_map(|agent| agent.seen.iter().copied()).max().unwrap_or(0);
    (epoch, id)
}

#[test]
fn a_backup_taken_mid_deployment_and_restored_later_moves_past_what_agents_saw() {
    let mut world = World::new();
    // Two more empty boxes with tokens from before the backup: box-3 registers only after the
    // restore, so the restored controller must command it afresh; box-4 only between the
    // backup and the restore, so the history the backup does not hold issues commands too.
    let empty_box = |box_id: &str| {
        let body = json!({"kind": "agent", "box_id": box_id, "service": "checkout-api"});
        let (status, answer) =
            call(&world.url(), &world.admin, "POST", "/api/v1/tokens", Some(body), Duration::ZERO)
                .unwrap();
        assert_eq!(status, 201, "{answer}");
        SimAgent {
            box_id: box_id.into(),
            token: answer["token"].as_str().unwrap().to_string(),
            target: world.agents[2].target.clone(),
            pipeline: world.agents[2].pipeline.clone(),
            ..placeholder()
        }
    };
    let (late, between) = (empty_box("box-3"), empty_box("box-4"));

    // Mid-deployment: the repair is committed and waiting for its box. Back up now, with the
    // server running.
    let committed = commit_repair_undelivered(&mut world);
    let backup = world._temp.path().join("backup.db");
    let data = world.data.to_str().unwrap().to_string();
    let (ok, _, stderr) = common::gantry(&[
        "server",
        "backup",
        "--data-dir",
        &data,
        "--to",
        backup.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");

    // Later: the repair is carried out, box-4 joins and is repaired too, and the controller
    // restarts twice more.
    world.agents.push(between);
    until(&mut world, "the repairs", World::converged);
    assert_eq!(world.agents[2].seen.iter().copied().collect::<Vec<_>>(), committed);
    for _ in 0..2 {
        let (epoch, _) = highest_seen(&world.agents);
        world.restart();
        until(&mut world, "every box on the new epoch", |world| {
            world.agents.iter().all(|agent| agent.highest_epoch > epoch)
        });
    }
    let (epoch_seen, id_seen) = highest_seen(&world.agents);
    assert!(epoch_seen >= 3, "two restarts after the backup's epoch: {epoch_seen}");
    let between = world.agents.pop().unwrap();
    assert!(
        between.seen.iter().all(|id| *id > committed[0]),
        "box-4's repair was issued after the backup: {:?} after {committed:?}",
        between.seen
    );

    // Restore the backup taken mid-deployment and start again.
    world.kill();
    let (ok, _, stderr) = common::gantry(&[
        "server",
        "restore",
        "--data-dir",
        &data,
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    world.restart();
    for agent in &mut world.agents {
        agent.registered = false;
    }
    let before: Vec<usize> = world.agents.iter().map(|agent| agent.received.len()).collect();
    world.agents.push(late);
    until(&mut world, "the late box's repair", World::converged);
    for _ in 0..5 {
        world.step_agents("0s");
    }

    // Every command any box took after the restore is of a later epoch than any it saw, under
    // an id never seen before; the late box got exactly one.
    for (n, agent) in world.agents.iter().enumerate() {
        for (id, epoch) in &agent.received[before.get(n).copied().unwrap_or(0)..] {
            assert!(*epoch > epoch_seen, "{}: command {id} of epoch {epoch}", agent.box_id);
            assert!(
                *id > id_seen,
                "{}: command id {id} reused (seen up to {id_seen})",
                agent.box_id
            );
        }
    }
    let late = world.agents.last().unwrap();
    assert_eq!(late.received.len(), 1, "one repair for the late box: {:?}", late.received);
    assert!(late.highest_epoch > epoch_seen, "{} <= {epoch_seen}", late.highest_epoch);
    for agent in &world.agents[..3] {
        assert_eq!(
            agent.received.len(),
            before[world.agents.iter().position(|a| a.box_id == agent.box_id).unwrap()],
            "{} needed nothing after the restore: {:?}",
            agent.box_id,
            agent.received
        );
    }
    let (ok, stdout, stderr) = common::gantry(&["audit", "verify", "--data-dir", &data]);
    assert!(ok, "the restored chain verifies: {stdout}{stderr}");
}
