//! The controller builds: a real `gantry server` with a supply home polls the demo pipeline's
//! git source, builds its new mainline head as the trusted build service and hands the artifact
//! to the engine. Killed (`kill -9`) in the middle of that build, a restarted server converges to
//! the same artifact — one in the store, one in the engine, the commit not lost — and killed
//! again once it has, it builds nothing twice. The agent routes serve the artifact (bytes whose
//! digest is the one named), the signed trust list and the signed block list.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a build, a restart or a hand-over may take on a loaded machine.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// The pipeline of `examples/demo`.
const PIPELINE: &str = "sample-service";

/// A `gantry server` in a process group of its own; the group (the server and any build it
/// started) is killed with SIGKILL when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(world: &World) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(world.dir.path().join("server.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["server", "--data-dir"])
            .arg(world.dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--poll-interval", "1s"])
            .arg("--organisation")
            .arg(world.dir.path().join("organisation"))
            .arg("--supply-home")
            .arg(world.home())
            .arg("--trusted-base")
            .arg(format!("{PIPELINE}={}", world.trusted_base))
            .env_remove("GANTRY_HOME")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}; see {}", world.log()))
            .to_string();
        Server { child, url }
    }

    /// `kill -9` of the server and everything in its group, then reaped.
    fn kill(mut self) {
        self.kill_group();
    }

    fn kill_group(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn get(&self, token: &str, path: &str) -> (u16, Vec<u8>) {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder().http_status_as_error(false).build(),
        );
        let mut response = agent
            .get(format!("{}{path}", self.url))
            .header("authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap();
        (status, body)
    }

    fn json(&self, token: &str, path: &str) -> Value {
        let (status, body) = self.get(token, path);
        assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    fn post(&self, token: &str, path: &str, body: Value) -> Value {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder().http_status_as_error(false).build(),
        );
        let mut response = agent
            .post(format!("{}{path}", self.url))
            .header("authorization", &format!("Bearer {token}"))
            .send_json(body)
            .unwrap();
        response.body_mut().read_json().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// A supply home with keys, a git repository of the sample service with two mainline commits
/// (the trusted base and the head to build), and the demo organisation building from it with
/// a build that takes a few seconds.
struct World {
    dir: tempfile::TempDir,
    trusted_base: String,
    head: String,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Dana")
        .env("GIT_AUTHOR_EMAIL", "dana@example.com")
        .env("GIT_COMMITTER_NAME", "Dana")
        .env("GIT_COMMITTER_EMAIL", "dana@example.com")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let home = gantry_supply::home::Home::new(dir.path().join("supply")).unwrap();
        home.keys().generate(jiff::Timestamp::now()).unwrap();

        let repository = dir.path().join("sample-service");
        copy_tree(&examples.join("sample-service"), &repository);
        git(&repository, &["init", "--quiet", "--initial-branch=main"]);
        git(&repository, &["add", "."]);
        git(&repository, &["commit", "--quiet", "-m", "The sample service"]);
        let trusted_base = git(&repository, &["rev-parse", "HEAD"]);
        std::fs::write(repository.join("config/built-by-the-controller"), "yes\n").unwrap();
        git(&repository, &["add", "."]);
        git(&repository, &["commit", "--quiet", "-m", "A change for the controller to build"]);
        let head = git(&repository, &["rev-parse", "HEAD"]);

        let organisation = dir.path().join("organisation");
        copy_tree(&examples.join("demo"), &organisation);
        let file = organisation.join("sample-service.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        let source = format!("file://{}", repository.display());
        assert!(text.contains(gantry_fleet_placeholder()), "{text}");
        // Long enough to be killed in the middle of; short enough for CI.
        let text = text
            .replace(gantry_fleet_placeholder(), &source)
            .replace("command: \"true\"", "command: \"sleep 3\"");
        assert!(text.contains("sleep 3"), "the demo's build command moved: {text}");
        std::fs::write(&file, text).unwrap();
        World { dir, trusted_base, head }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("supply")
    }

    fn log(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/bootstrap-admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The digests in the supply home's store.
    fn stored(&self) -> Vec<String> {
        gantry_supply::home::Home::new(self.home())
            .unwrap()
            .store()
            .list()
            .unwrap()
            .iter()
            .map(|artifact| artifact.digest.to_string())
            .collect()
    }
}

/// The repository the demo's pipeline file names until the demo replaces it.
fn gantry_fleet_placeholder() -> &'static str {
    "file:///gantry-demo/sample-service.git"
}

/// Polls `probe` until it answers, or fails the test after [`CONVERGE_TIMEOUT`].
fn wait_for<T>(world: &World, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {CONVERGE_TIMEOUT:?}; server log: {}",
            std::fs::read_to_string(world.log()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The engine's artifacts of the pipeline: `(digest, sequence)`.
fn engine_artifacts(server: &Server, token: &str) -> Vec<(String, u64)> {
    let (status, body) = server.get(token, &format!("/api/v1/pipelines/{PIPELINE}"));
    if status != 200 {
        return Vec::new();
    }
    let view: Value = serde_json::from_slice(&body).unwrap();
    view["artifacts"]
        .as_array()
        .map(|artifacts| {
            artifacts
                .iter()
                .map(|a| {
                    (a["digest"].as_str().unwrap().to_string(), a["sequence"].as_u64().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_server_killed_mid_build_converges_to_the_same_artifact() {
    let world = World::new();

    // First run: killed while the head is being built.
    let server = Server::start(&world);
    let token = world.admin_token();
    wait_for(&world, "the build of the head started", || {
        let builds = server.json(&token, "/api/v1/builds");
        (builds["pipelines"][PIPELINE]["building"] == json!(world.head)).then_some(())
    });
    server.kill();
    assert!(world.stored().is_empty(), "killed mid-build, nothing was stored yet");

    // Second run: the head is built (not skipped) and handed to the engine.
    let server = Server::start(&world);
    let artifacts = wait_for(&world, "the engine took the head's artifact", || {
        let artifacts = engine_artifacts(&server, &token);
        (!artifacts.is_empty()).then_some(artifacts)
    });
    let stored = world.stored();
    assert_eq!(stored.len(), 1, "one artifact in the store: {stored:?}");
    assert_eq!(artifacts.len(), 1, "one artifact in the engine: {artifacts:?}");
    let (digest, sequence) = artifacts[0].clone();
    assert_eq!(digest, stored[0], "the engine holds the stored artifact");
    assert_eq!(sequence, 2, "its position is its commit's depth on the mainline");

    // Its provenance and verdict, as people read it.
    let detail = server.json(&token, &format!("/api/v1/artifacts/{digest}"));
    assert_eq!(detail["commit"], json!(world.head), "{detail}");
    assert_eq!(detail["baseline"], json!(world.trusted_base), "{detail}");
    let commits: Vec<&str> =
        detail["commits"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(commits, [world.head.as_str()], "the range starts after the trusted base");
    assert!(
        detail["builder_id"].as_str().unwrap().starts_with("https://gantry.dev/builders/service/"),
        "{detail}"
    );
    assert!(!detail["signed_by"].as_str().unwrap().is_empty(), "{detail}");
    let listed = server.json(&token, &format!("/api/v1/pipelines/{PIPELINE}/artifacts"));
    assert_eq!(listed["artifacts"][0]["digest"], json!(digest), "{listed}");

    // What an agent of the service downloads: the package whose digest is the one named, its
    // attestation and manifest, and the two signed lists.
    let issued = server.post(
        &token,
        "/api/v1/tokens",
        json!({"kind": "agent", "box_id": "box-1", "service": PIPELINE}),
    );
    let agent = issued["token"].as_str().unwrap().to_string();
    let (status, package) = server.get(&agent, &format!("/api/v1/agent/artifacts/{digest}"));
    assert_eq!(status, 200);
    assert_eq!(gantry_model::Digest::of(&package).to_string(), digest);
    for (path, payload_type) in [
        (
            format!("/api/v1/agent/artifacts/{digest}/attestation"),
            Some("application/vnd.in-toto+json"),
        ),
        (format!("/api/v1/agent/artifacts/{digest}/manifest"), None),
        (
            "/api/v1/agent/trust-list".to_string(),
            Some(gantry_supply::keys::TRUSTED_KEYS_PAYLOAD_TYPE),
        ),
        ("/api/v1/agent/block-list".to_string(), None),
    ] {
        let document = wait_for(&world, &format!("GET {path}"), || {
            let (status, body) = server.get(&agent, &path);
            (status == 200).then(|| serde_json::from_slice::<Value>(&body).unwrap())
        });
        if let Some(payload_type) = payload_type {
            assert_eq!(document["payloadType"], json!(payload_type), "{path}: {document}");
        }
    }
    let other = server.post(
        &token,
        "/api/v1/tokens",
        json!({"kind": "agent", "box_id": "box-2", "service": "another-service"}),
    );
    let (status, _) =
        server.get(other["token"].as_str().unwrap(), &format!("/api/v1/agent/artifacts/{digest}"));
    assert_eq!(status, 404, "another service's agent cannot fetch it");

    // Killed again after it converged: the restarted server hands the same artifact over again
    // and builds nothing twice.
    server.kill();
    let server = Server::start(&world);
    wait_for(&world, "the restarted server handled the head", || {
        let builds = server.json(&token, "/api/v1/builds");
        (builds["pipelines"][PIPELINE]["last_artifact"] == json!(digest)).then_some(())
    });
    assert_eq!(world.stored(), std::slice::from_ref(&digest), "nothing was built twice");
    assert_eq!(engine_artifacts(&server, &token), [(digest, sequence)]);
}
