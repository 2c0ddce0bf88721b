//! Alarms in a real `gantry server` process: the controller scrapes the `/metrics` endpoint each
//! box's agent registered (a real HTTP endpoint the test controls), evaluates the pipeline's
//! alarm from what it scraped, and shows the state, reason, scope, recent values and each box's
//! last scrape in its API and its own metrics. A fault counter that jumps on one box turns the
//! alarm to ALARM; an endpoint that does not answer is a failed scrape, never a healthy box.
//!
//! What this does not show: a rollback. No artifact enters a server process here (that takes a
//! build from a source); the rollback an alarm scraped this way causes — the command an agent's
//! long-poll receives, and the audit record naming the alarm — is shown on the same controller
//! code in-process, by `crates/server/tests/alarms.rs`.

#[path = "../../server/tests/support/alarm_world.rs"]
mod alarm_world;
#[allow(
    dead_code,
    reason = "this test starts its server with an organisation; only the guard is shared"
)]
#[path = "support/server.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alarm_world::{ALARM, MetricsEndpoint, PIPELINE, client, write_organisation};
use serde_json::{Value, json};
use support::Process;

/// How long the controller may take to load the organisation and see two alarm periods.
const PATIENCE: Duration = Duration::from_secs(60);

struct Controller {
    _process: Process,
    url: String,
    admin: String,
}

impl Controller {
    fn start(temp: &std::path::Path) -> Controller {
        let organisation = write_organisation(temp);
        let data = temp.join("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["server", "--data-dir"])
            .arg(&data)
            .arg("--organisation")
            .arg(&organisation)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The guard first: the server is killed whatever fails from here on.
        let process = Process(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let admin = std::fs::read_to_string(data.join("bootstrap-admin.token")).unwrap();
        Controller { _process: process, url, admin: admin.trim().to_string() }
    }

    fn call(&self, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let agent = client(Duration::from_secs(10));
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {token}");
        let response = match body {
            Some(body) => agent.post(&url).header("authorization", &auth).send_json(body),
            None => agent.get(&url).header("authorization", &auth).call(),
        }
        .unwrap();
        let status = response.status().as_u16();
        (status, response.into_body().read_json().unwrap_or(Value::Null))
    }

    /// Registers `box_id` with its metrics URL and reports it running `artifact`.
    fn register_box(&self, box_id: &str, metrics_url: &str, artifact: &str) {
        let (status, answer) = self.call(
            &self.admin,
            "/api/v1/tokens",
            Some(json!({"kind": "agent", "box_id": box_id, "service": "shop"})),
        );
        assert_eq!(status, 201, "{answer}");
        let token = answer["token"].as_str().unwrap().to_string();
        let base = format!("/api/v1/agent/boxes/{box_id}");
        let target = json!({"environment": "prod", "region": "east", "zone": "east-a"});
        let (status, answer) = self.call(
            &token,
            &format!("{base}/register"),
            Some(json!({"protocol_version": 1, "box_id": box_id, "target": target,
                        "highest_epoch_seen": 0, "metrics_url": metrics_url})),
        );
        assert_eq!(status, 200, "{answer}");
        let report = json!({
            "observed_at": gantry_model::Timestamp::now().to_string(),
            "highest_epoch_seen": answer["epoch"],
            "pipelines": [{"pipeline": PIPELINE, "running": artifact, "health": "healthy"}],
        });
        let (status, answer) = self.call(&token, &format!("{base}/report"), Some(report));
        assert_eq!(status, 200, "{answer}");
    }

    fn alarm(&self) -> Value {
        let (_, alarms) =
            self.call(&self.admin, &format!("/api/v1/pipelines/{PIPELINE}/alarms"), None);
        alarms["alarms"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["alarm"] == ALARM && a["region"] == "east").cloned())
            .unwrap_or(Value::Null)
    }

    fn wait_for(&self, what: &str, done: impl Fn(&Controller) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            let (_, alarms) = self.call(&self.admin, "/api/v1/alarms", None);
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {alarms:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A counter of the controller's own metrics.
    fn counter(&self, name: &str) -> f64 {
        let text = client(Duration::from_secs(10))
            .get(format!("{}/metrics", self.url))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }
}

#[test]
fn the_alarm_state_comes_from_scraping_each_box_the_agent_registered() {
    let temp = tempfile::tempdir().unwrap();
    let endpoint = MetricsEndpoint::start();
    let controller = Controller::start(temp.path());
    controller.wait_for("the pipeline's alarms", |c| !c.alarm().is_null());
    let running = gantry_model::Digest::of(b"shop v1").to_string();
    for box_id in ["box-0", "box-1"] {
        controller.register_box(box_id, &endpoint.url_of(box_id), &running);
    }
    // A box whose endpoint answers nothing: its scrapes fail.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/metrics", closed.local_addr().unwrap());
    drop(closed);
    controller.register_box("box-2", &closed_url, &running);

    // OK, decided on the scraped counters: a fault ratio of 0 over the service's boxes.
    controller.wait_for("an OK reading from scraped samples", |c| c.alarm()["state"] == "OK");
    let alarm = controller.alarm();
    assert_eq!(alarm["scope"], json!({"region": "east", "service": "shop"}), "{alarm}");
    let values = alarm["recent_values"].as_array().unwrap();
    assert!(values.iter().any(|v| v["value"].as_f64() == Some(0.0)), "{alarm}");

    // The fault counter of one box jumps: ALARM, with the scraped ratio as its reason.
    endpoint.set_fault_rate("box-0", alarm_world::BAD_FAULT_RATE);
    controller.wait_for("ALARM from the scraped faults", |c| c.alarm()["state"] == "ALARM");
    let alarm = controller.alarm();
    let reason = alarm["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("1 of 1 data points was greater than the threshold 0.05"),
        "{reason}"
    );
    let breaching = alarm["recent_values"].as_array().unwrap().last().unwrap()["value"].as_f64();
    assert!(breaching.is_some_and(|ratio| ratio > 0.05 && ratio <= 0.25), "{alarm}");
    let transitions: Vec<&str> = alarm["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert!(transitions.ends_with(&["OK", "ALARM"]), "{transitions:?}");

    // Every box's last scrape, and the controller's counts of its work.
    let (_, list) = controller.call(&controller.admin, "/api/v1/alarms", None);
    let scrapes = list["scrapes"].as_array().unwrap();
    let error_of = |box_id: &str| {
        let scrape = scrapes.iter().find(|s| s["box_id"] == box_id).unwrap();
        scrape["error"].as_str().map(str::to_string)
    };
    assert_eq!(error_of("box-0"), None, "{list:#}");
    assert_eq!(error_of("box-1"), None, "{list:#}");
    assert!(error_of("box-2").is_some_and(|e| e.contains(&closed_url)), "{list:#}");
    assert!(controller.counter("gantry_scrapes_total") >= 6.0);
    assert!(controller.counter("gantry_scrape_failures_total") >= 2.0);
    assert!(controller.counter("gantry_alarm_evaluations_total") >= 2.0);

    // A registration's metrics URL is checked, naming the field.
    let (status, answer) = controller.call(
        &controller.admin,
        "/api/v1/tokens",
        Some(json!({"kind": "agent", "box_id": "box-3", "service": "shop"})),
    );
    assert_eq!(status, 201);
    let token = answer["token"].as_str().unwrap();
    let (status, answer) = controller.call(
        token,
        "/api/v1/agent/boxes/box-3/register",
        Some(json!({"protocol_version": 1, "box_id": "box-3",
                    "target": {"environment": "prod", "region": "east", "zone": "east-a"},
                    "highest_epoch_seen": 0, "metrics_url": "box-3:9100/metrics"})),
    );
    assert_eq!((status, answer["field"].as_str()), (422, Some("metrics_url")), "{answer}");
}
