//! `gantry server` as a real process on loopback, killed with SIGKILL, backed up and restored;
//! `gantry audit verify` on its data directory.

mod common;

#[path = "../../server/tests/support/organisation.rs"]
mod organisation;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use gantry_store::Store;
use serde_json::{Value, json};

/// A running `gantry server`, killed (SIGKILL) and reaped when dropped, whatever happens.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(data: &Path) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["server", "--data-dir"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Ready when it prints the address it bound (after the store opened).
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        ServerProcess { child, url }
    }

    /// `kill -9`: no shutdown code runs.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn call(url: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent = agent();
    let url = format!("{url}{path}");
    let auth = format!("Bearer {token}");
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
        ("POST", Some(body)) => agent.post(&url).header("authorization", &auth).send_json(body),
        other => panic!("unsupported {other:?}"),
    }
    .unwrap();
    let status = response.status().as_u16();
    let value = response.into_body().read_json().unwrap_or(Value::Null);
    (status, value)
}

fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("bootstrap-admin.token")).unwrap().trim().to_string()
}

fn agent_token(server: &ServerProcess, admin: &str, box_id: &str) -> String {
    let (status, answer) = call(
        &server.url,
        admin,
        "POST",
        "/api/v1/tokens",
        Some(json!({"kind": "agent", "box_id": box_id, "service": "checkout-api"})),
    );
    assert_eq!(status, 201, "{answer}");
    answer["token"].as_str().unwrap().to_string()
}

/// Registers box-1 as an agent that has seen `epoch` and `command_id`; returns the epoch the
/// controller answers with.
fn register(server: &ServerProcess, token: &str, epoch: u64, command_id: u64) -> u64 {
    let body = json!({"protocol_version": 1, "box_id": "box-1", "highest_epoch_seen": epoch,
                      "highest_command_id_seen": command_id,
                      "target": {"environment": "prod", "region": "eu-west-1", "zone": "eu-west-1a"}});
    let (status, answer) =
        call(&server.url, token, "POST", "/api/v1/agent/boxes/box-1/register", Some(body));
    assert_eq!(status, 200, "{answer}");
    answer["epoch"].as_u64().unwrap()
}

fn high_water(data: &Path) -> gantry_store::HighWater {
    let mut store = gantry_server::SqliteStore::open(&data.join("gantry.db")).unwrap();
    store.load().unwrap().high_water
}

fn gantry(args: &[&str]) -> (bool, String, String) {
    common::gantry(args)
}

#[test]
fn a_restored_backup_moves_past_every_epoch_and_command_id_agents_saw() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let backup = temp.path().join("backup.db");

    let server = ServerProcess::start(&data);
    let admin = admin_token(&data);
    let token = agent_token(&server, &admin, "box-1");
    assert_eq!(register(&server, &token, 0, 0), 1);
    let (ok, _, stderr) = gantry(&[
        "server",
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--to",
        backup.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    server.kill();

    // Two more starts after the backup: the agent sees epoch 3 and command ids up to 500.
    ServerProcess::start(&data).kill();
    let server = ServerProcess::start(&data);
    assert_eq!(register(&server, &token, 1, 500), 3);
    server.kill();

    let (ok, _, stderr) = gantry(&[
        "server",
        "restore",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("before-restore"), "the old checkpoints are kept aside: {stderr}");
    let server = ServerProcess::start(&data);
    let epoch = register(&server, &token, 3, 500);
    assert!(epoch > 3, "the restored controller moved past the agent's epoch 3, to {epoch}");
    server.kill();
    let marks = high_water(&data);
    assert!(marks.epoch >= epoch && marks.command_id >= 500, "{marks:?}");
    let (ok, stdout, stderr) = gantry(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "the restored chain verifies against its fresh checkpoints: {stdout}{stderr}");
}

#[test]
fn a_second_server_on_one_data_directory_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let _server = ServerProcess::start(&data);
    let (ok, _, stderr) =
        gantry(&["server", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!ok && stderr.contains("another gantry server holds this data directory"), "{stderr}");
    let (ok, _, stderr) = gantry(&["server", "--data-dir", "unused", "--listen", "0.0.0.0:0"]);
    assert!(!ok && stderr.contains("loopback only"), "{stderr}");
}

#[test]
fn audit_verify_catches_a_truncated_log_after_kill_9() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let server = ServerProcess::start(&data);
    let admin = admin_token(&data);
    for n in 0..5 {
        agent_token(&server, &admin, &format!("box-{n}"));
    }
    server.kill();
    // The next start checkpoints the chain's head before serving.
    ServerProcess::start(&data).kill();
    let (ok, stdout, stderr) = gantry(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(ok && stdout.contains("6 records"), "{stdout}{stderr}");

    // An attacker with the database drops the triggers and cuts the last two records.
    let database = data.join("gantry.db");
    let connection = rusqlite_connection(&database);
    connection
        .execute_batch("DROP TRIGGER audit_is_append_only_delete; DELETE FROM audit WHERE seq > 4;")
        .unwrap();
    drop(connection);
    let (ok, _, stderr) = gantry(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(!ok && stderr.contains("truncated"), "{stderr}");
}

fn rusqlite_connection(path: &Path) -> gantry_server::sqlite::RawConnection {
    gantry_server::sqlite::raw_connection(path).unwrap()
}

/// Starts `gantry server` with `args` and returns it with the address it printed, or `None`
/// when it exited (refused to start) with its stderr.
fn start_with(args: &[&str]) -> Result<(ServerProcess, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("server")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    if line.is_empty() {
        let output = child.wait_with_output().unwrap();
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let url = line
        .split_whitespace()
        .find(|word| word.contains("://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Its logs are drained, or a full pipe would stall the server's next log line.
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Ok((ServerProcess { child, url: url.clone() }, url))
}

#[test]
fn beyond_loopback_the_server_speaks_https_only_and_refuses_plain_http() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_file, key_file) = (temp.path().join("cert.pem"), temp.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let data_arg = data.to_str().unwrap();
    let (cert_arg, key_arg) = (cert_file.to_str().unwrap(), key_file.to_str().unwrap());

    // Beyond loopback without TLS: refused before anything is opened, saying what to do.
    let refused = start_with(&["--data-dir", data_arg, "--listen", "0.0.0.0:0"]).err().unwrap();
    assert!(refused.contains("loopback only") && refused.contains("--tls-cert"), "{refused}");
    assert!(!data.exists(), "a refused start opens nothing");
    // A key that is not a key: named, and nothing opened.
    let refused = start_with(&[
        "--data-dir",
        data_arg,
        "--listen",
        "0.0.0.0:0",
        "--tls-cert",
        cert_arg,
        "--tls-key",
        cert_arg,
    ])
    .err()
    .unwrap();
    assert!(refused.contains("cert.pem: cannot read a private key"), "{refused}");
    assert!(!data.exists(), "a refused start opens nothing");

    // With a certificate and key, on every interface.
    let (_server, url) = start_with(&[
        "--data-dir",
        data_arg,
        "--listen",
        "0.0.0.0:0",
        "--tls-cert",
        cert_arg,
        "--tls-key",
        key_arg,
    ])
    .unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let port = url.rsplit(':').next().unwrap();
    let trusting: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                    ureq::tls::Certificate::from_der(cert.der()).to_owned(),
                ])))
                .build(),
        )
        .build()
        .into();
    let health = format!("https://127.0.0.1:{port}/api/v1/health");
    let response = trusting.get(&health).call().unwrap();
    assert_eq!(response.status(), 200);
    // An authenticated call over HTTPS, with the bootstrap admin token.
    let response = trusting
        .get(&format!("https://127.0.0.1:{port}/api/v1/tokens"))
        .header("authorization", &format!("Bearer {}", admin_token(&data)))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.into_body().read_to_string());

    // Plain HTTP on the same port gets no answer; nor does a client that does not trust it.
    let plain = agent().get(&format!("http://127.0.0.1:{port}/api/v1/health")).call();
    assert!(plain.is_err(), "plain HTTP answered: {:?}", plain.map(|r| r.status()));
    let untrusting: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::WebPki).build(),
        )
        .build()
        .into();
    let error = untrusting.get(&health).call().unwrap_err();
    assert!(format!("{error}").to_lowercase().contains("certificate"), "{error}");
}

/// Polls `GET path` with `token` until `done` holds of the answer (at most two minutes: an
/// organisation load takes seconds on a loaded machine).
fn until_answer(url: &str, token: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, answer) = call(url, token, "GET", path, None);
        if status == 200 && done(&answer) {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "timed out on {path}: {answer}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_bad_pipeline_file_dropped_into_the_organisation_is_refused_and_nothing_else_changes() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let directory = organisation::example_organisation(temp.path());
    let (_server, url) = start_with(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--organisation",
        directory.to_str().unwrap(),
    ])
    .unwrap();
    let admin = admin_token(&data);
    let loaded = until_answer(&url, &admin, "/api/v1/organisation", |o| o["loaded_at"].is_string());
    let names = |pipelines: &Value| -> Vec<String> {
        let pipelines = pipelines["pipelines"].as_array().unwrap();
        pipelines.iter().map(|p| p["pipeline"].as_str().unwrap().into()).collect()
    };
    let before = until_answer(&url, &admin, "/api/v1/pipelines", |p| {
        p["pipelines"].as_array().is_some_and(|p| !p.is_empty())
    });

    // A copy of a good pipeline under a new name, with a field Gantry does not know.
    let good =
        std::fs::read_to_string(directory.join("services/checkout-api/config.yaml")).unwrap();
    let broken =
        good.replace("pipeline: checkout-api-config", "pipeline: broken") + "colour: blue\n";
    std::fs::write(directory.join("services/checkout-api/broken.yaml"), broken).unwrap();

    let refused = until_answer(&url, &admin, "/api/v1/organisation", |o| o["refused"].is_object());
    let files = refused["refused"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "only the bad file is at fault: {refused}");
    assert!(files[0]["file"].as_str().unwrap().ends_with("broken.yaml"), "{refused}");
    assert!(files[0]["diagnostics"].as_str().unwrap().contains("colour"), "{refused}");
    // The running organisation is the last good one: same load, same pipelines, none added.
    assert_eq!(refused["loaded_at"], loaded["loaded_at"], "{refused}");
    assert_eq!(refused["pipelines"], loaded["pipelines"], "{refused}");
    let (status, after) = call(&url, &admin, "GET", "/api/v1/pipelines", None);
    assert_eq!(status, 200);
    assert_eq!(names(&after), names(&before));
    assert!(!names(&after).contains(&"broken".to_string()));
}
