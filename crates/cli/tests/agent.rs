//! `gantry agent` as a real process against a real `gantry server` on loopback: it registers
//! with its box token, reports at once and long-polls; its state file keeps the controller's
//! epoch; `kill -9`ed and restarted, it comes back and reports, never below the epoch it had
//! seen. Prints the agent's idle resident memory (benchmark: printed, not asserted; goal
//! ≤ 15 MB, for a release build).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/server.rs"]
mod server;
use server::{Process, start_server};

fn call(url: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{url}{path}");
    let auth = format!("Bearer {token}");
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
        ("POST", Some(body)) => agent.post(&url).header("authorization", &auth).send_json(body),
        other => panic!("unsupported {other:?}"),
    }
    .unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().read_json().unwrap_or(Value::Null))
}

fn start_agent(dir: &Path, url: &str) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("agent")
        .arg("--root")
        .arg(dir.join("agent"))
        .args(["--controller", url])
        .arg("--token-file")
        .arg(dir.join("agent.token"))
        .arg("--trust")
        .arg(dir.join("trust.json"))
        .args(["--box-id", "box-1", "--environment", "prod", "--region", "eu-west-1"])
        .args(["--zone", "eu-west-1a"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    Process(child)
}

/// Waits until the controller lists box-1 with a report newer than `after`.
fn wait_for_report(dir: &Path, url: &str, admin: &str, after: jiff::Timestamp) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = call(url, admin, "GET", "/api/v1/boxes/box-1", None);
        if status == 200 {
            let observed = answer.pointer("/report/observed_at").and_then(Value::as_str);
            let observed = observed.and_then(|at| at.parse::<jiff::Timestamp>().ok());
            if observed.is_some_and(|at| at > after) {
                return answer;
            }
        }
        let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
        assert!(Instant::now() < until, "box-1 never reported: {status} {answer}\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn the_agent_registers_polls_and_reports_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let (_server, url) = start_server(&data);
    let admin = std::fs::read_to_string(data.join("bootstrap-admin.token")).unwrap();
    let admin = admin.trim();
    let (status, answer) = call(
        &url,
        admin,
        "POST",
        "/api/v1/tokens",
        Some(json!({"kind": "agent", "box_id": "box-1", "service": "sample"})),
    );
    assert_eq!(status, 201, "{answer}");
    std::fs::write(dir.path().join("agent.token"), answer["token"].as_str().unwrap()).unwrap();
    let keys = gantry_supply::keys::KeyDirectory::new(dir.path().join("keys"));
    keys.generate(jiff::Timestamp::now()).unwrap();
    publish_blocks(&keys, &dir.path().join("blocks.json"));
    let trust = json!({
        "trusted_keys": keys.trusted_keys_path(),
        "trust_root_key": keys.trust_root_public().unwrap(),
        "block_list": dir.path().join("blocks.json"),
        "builder_ids": ["https://gantry.dev/builders/service"],
    });
    std::fs::write(dir.path().join("trust.json"), trust.to_string()).unwrap();

    let started = jiff::Timestamp::now();
    let agent = start_agent(dir.path(), &url);
    wait_for_report(dir.path(), &url, admin, started);
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("agent/agent-state.json")).unwrap())
            .unwrap();
    let epoch = state["highest_epoch_seen"].as_u64().unwrap();
    assert!(epoch >= 1, "the agent keeps the controller's epoch on disk: {state}");
    // Idle: registered, long-polling with nothing to do.
    std::thread::sleep(Duration::from_millis(500));
    eprintln!("benchmark: agent RSS idle {} KiB (goal <= 15360 KiB)", rss_kib(agent.0.id()));

    // kill -9, then start again: it registers with the epoch it had seen, from its disk.
    drop(agent);
    let restarted_at = jiff::Timestamp::now();
    let _agent = start_agent(dir.path(), &url);
    let answer = wait_for_report(dir.path(), &url, admin, restarted_at);
    // The controller may move its epoch on a registration; the agent never goes below what it
    // had seen before it was killed.
    let reported = answer.pointer("/report/highest_epoch_seen").and_then(Value::as_u64);
    assert!(reported.is_some_and(|seen| seen >= epoch), "{answer}");
}

/// The block list boxes read: empty, signed by the trust root of `keys`, fresh for an hour.
fn publish_blocks(keys: &gantry_supply::keys::KeyDirectory, path: &std::path::Path) {
    let now = jiff::Timestamp::now();
    let list = gantry_supply::published_blocks::PublishedBlocks {
        published_at: now,
        expires_at: now + jiff::SignedDuration::from_secs(3600),
        blocks: Vec::new(),
        affected: Vec::new(),
    };
    keys.sign_document(
        path,
        &serde_json::to_vec(&list).unwrap(),
        gantry_supply::published_blocks::PUBLISHED_BLOCKS_PAYLOAD_TYPE,
    )
    .unwrap();
}
