//! `gantry fleet up|status|down` against a real `gantry server`: a slice of a topology comes up
//! as one built-in load balancer process per target and one agent process per box, every agent
//! registers with the controller, and `down` leaves no process behind.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/server.rs"]
mod server;
use server::start_server;

/// Takes the fleet down whatever the test's outcome.
struct FleetGuard<'a>(&'a Path);

impl Drop for FleetGuard<'_> {
    fn drop(&mut self) {
        if self.0.join("fleet.json").exists() {
            let _ = gantry(&["fleet", "down", "--dir", &self.0.display().to_string()]);
        }
    }
}

fn gantry(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gantry")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn boxes(url: &str, token: &str) -> Vec<String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .get(format!("{url}/api/v1/boxes"))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let body: Value = response.body_mut().read_json().unwrap_or_default();
    let mut ids: Vec<String> = body["boxes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b.get("reported_at").is_some())
        .filter_map(|b| b["box_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

const TOPOLOGY: &str = "regions:
  - name: local-1
    traffic: 100
    time_zone: UTC
    zones:
      - { name: local-1a }
      - { name: local-1b }
";

#[test]
fn a_local_fleet_comes_up_registers_and_goes_down_leaving_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let (_server, url) = start_server(&data);
    let admin_file = data.join("bootstrap-admin.token");
    let admin = std::fs::read_to_string(&admin_file).unwrap().trim().to_string();
    std::fs::write(dir.path().join("topology.yaml"), TOPOLOGY).unwrap();
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

    let fleet = dir.path().join("fleet");
    let fleet_arg = fleet.display().to_string();
    let _guard = FleetGuard(&fleet);
    let (ok, out, err) = gantry(&[
        "fleet",
        "up",
        "--dir",
        &fleet_arg,
        "--topology",
        &dir.path().join("topology.yaml").display().to_string(),
        "--regions",
        "local-1",
        "--boxes",
        "1",
        "--controller",
        &url,
        "--admin-token-file",
        &admin_file.display().to_string(),
        "--trust",
        &dir.path().join("trust.json").display().to_string(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("prod/local-1/local-1a"), "{out}");

    let expected = ["prod-local-1-local-1a-1", "prod-local-1-local-1b-1"];
    let until = Instant::now() + Duration::from_secs(20);
    while boxes(&url, &admin) != expected {
        assert!(Instant::now() < until, "registered: {:?}", boxes(&url, &admin));
        std::thread::sleep(Duration::from_millis(50));
    }

    let (ok, status, err) = gantry(&["fleet", "status", "--dir", &fleet_arg, "--json"]);
    assert!(ok, "{err}");
    let status: Vec<Value> = serde_json::from_str(&status).unwrap();
    assert_eq!(status.len(), 2);
    assert!(status.iter().all(|b| b["agent"] == true), "{status:?}");
    // Nothing is deployed yet: no service runs, so no box is in service.
    assert!(status.iter().all(|b| b["in_service"] == false), "{status:?}");

    let record: Value =
        serde_json::from_slice(&std::fs::read(fleet.join("fleet.json")).unwrap()).unwrap();
    let mut pids: Vec<u64> = Vec::new();
    for target in record["targets"].as_array().unwrap() {
        pids.push(target["balancer_pid"].as_u64().unwrap());
        for b in target["boxes"].as_array().unwrap() {
            pids.push(b["agent_pid"].as_u64().unwrap());
        }
    }
    assert_eq!(pids.len(), 4);

    let (ok, _, err) = gantry(&["fleet", "down", "--dir", &fleet_arg]);
    assert!(ok, "{err}");
    for pid in pids {
        assert!(!gantry_fleet::local::alive(pid as u32), "process {pid} is still running");
    }
    assert!(!fleet.join("fleet.json").exists());
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
