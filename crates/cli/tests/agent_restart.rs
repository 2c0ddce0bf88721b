//! A real `gantry agent` process `kill -9`ed in the middle of a deployment converges after its
//! restart: it reports the interrupted command failed (never carrying it out again), and the
//! controller's next command — a repair with a newer artifact, whose commit range starts at the
//! artifact the box already holds — is verified, installed and run.
//!
//! The controller here is a test double speaking the agent wire protocol over real HTTP; the
//! agent, its artifacts (built and signed by the supply chain from a git repository) and its
//! hooks are real.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use gantry_model::agent::{
    Acknowledged, AgentCommand, BoxId, CommandBatch, CommandId, CommandKind, Health, Registered,
    Report, ReportAccepted,
};
use gantry_model::pipeline::Build;
use gantry_model::{Digest, Source, Target};
use gantry_supply::blocks::BlockList;
use gantry_supply::build::{
    BuildRequest, Builder, BuilderRole, Sandbox, TRUSTED_BASE_ROOT, builder_id,
};
use gantry_supply::keys::KeyDirectory;
use gantry_supply::review::{Keyring, ReviewBook};
use gantry_supply::store::Store;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills the process group a hung hook left behind.
struct GroupGuard(PathBuf);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--"])
                .arg(format!("-{}", pid.trim()))
                .status();
        }
    }
}

#[derive(Default)]
struct Controller {
    commands: Vec<AgentCommand>,
    reports: Vec<Report>,
    /// By digest hex: package, attestation, manifest.
    artifacts: BTreeMap<String, [Vec<u8>; 3]>,
}

type Shared = Arc<Mutex<Controller>>;

fn target() -> Target {
    Target {
        environment: "prod".into(),
        region: "local-1".into(),
        zone: Some("local-1a".into()),
        cell: None,
    }
}

async fn register(State(_): State<Shared>) -> axum::Json<Registered> {
    axum::Json(Registered {
        epoch: 1,
        report_interval: gantry_model::Duration::from_seconds(1),
        max_long_poll: gantry_model::Duration::from_seconds(1),
        server_time: jiff::Timestamp::now(),
    })
}

/// Every command without an outcome in the latest report (the controller re-sends on evidence).
async fn commands(State(shared): State<Shared>) -> axum::Json<CommandBatch> {
    let outstanding = {
        let controller = shared.lock().unwrap();
        let done: Vec<CommandId> = controller
            .reports
            .last()
            .into_iter()
            .flat_map(|r| &r.pipelines)
            .flat_map(|p| &p.outcomes)
            .map(|o| o.command)
            .collect();
        controller.commands.iter().filter(|c| !done.contains(&c.id)).cloned().collect::<Vec<_>>()
    };
    if outstanding.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    axum::Json(CommandBatch { epoch: 1, commands: outstanding })
}

async fn acknowledge(State(_): State<Shared>) -> axum::Json<Acknowledged> {
    axum::Json(Acknowledged { outstanding: true })
}

async fn report(
    State(shared): State<Shared>,
    axum::Json(report): axum::Json<Report>,
) -> axum::Json<ReportAccepted> {
    shared.lock().unwrap().reports.push(report);
    axum::Json(ReportAccepted { epoch: 1 })
}

async fn artifact(
    State(shared): State<Shared>,
    UrlPath(path): UrlPath<String>,
) -> Result<Vec<u8>, axum::http::StatusCode> {
    let (hex, part) = match path.split_once('/') {
        Some((hex, "attestation")) => (hex.to_string(), 1),
        Some((hex, "manifest")) => (hex.to_string(), 2),
        _ => (path.clone(), 0),
    };
    let controller = shared.lock().unwrap();
    let files = controller.artifacts.get(&hex).ok_or(axum::http::StatusCode::NOT_FOUND)?;
    Ok(files[part].clone())
}

fn start_controller(shared: Shared) -> (tokio::runtime::Runtime, String) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/v1/agent/boxes/{box}/register", post(register))
        .route("/api/v1/agent/boxes/{box}/commands", get(commands))
        .route("/api/v1/agent/boxes/{box}/acknowledge", post(acknowledge))
        .route("/api/v1/agent/boxes/{box}/report", post(report))
        .route("/artifacts/{*path}", get(artifact))
        .with_state(shared);
    runtime.spawn(async move { axum::serve(listener, app).await });
    (runtime, url)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn commit(repo: &Path, message: &str) {
    git(repo, &["add", "--all"]);
    let who = ["-c", "user.name=bob", "-c", "user.email=bob@example.com"];
    git(repo, &[who[0], who[1], who[2], who[3], "commit", "--quiet", "-m", message]);
}

/// Builds the repository's head into `store`, signed with the key in `keys`.
fn build(dir: &Path, store: &Store) -> (Digest, [Vec<u8>; 3]) {
    let key = KeyDirectory::new(dir.join("keys")).active_key().unwrap();
    let reviews = ReviewBook::in_memory(Keyring::default());
    let builder = Builder {
        store,
        key: &key,
        reviews: &reviews,
        blocks: &BlockList::default(),
        work_dir: dir.join("work"),
        cache_dir: dir.join("cache"),
        role: BuilderRole::Service,
        host: "test-builder".into(),
        sandbox: Sandbox::detect(),
        hidden: vec![dir.join("keys")],
    };
    let request = BuildRequest {
        service: "sample".into(),
        pipeline: "sample-code".into(),
        source: Source {
            repository: dir.join("repo").display().to_string(),
            branch: "main".into(),
        },
        build: Build {
            command: "true".into(),
            outputs: vec!["appspec.yml".into(), "scripts".into(), "settings".into()],
            network: false,
            timeout: gantry_model::Duration::from_seconds(60),
        },
        review_required: false,
        commit: None,
        since: None,
        trusted_base: Some(TRUSTED_BASE_ROOT.into()),
        env: BTreeMap::new(),
        read_only_paths: Vec::new(),
    };
    let artifact = builder.build(&request).unwrap().artifact;
    let digest = artifact.digest;
    let files = [
        store.read_package(&digest).unwrap(),
        store.read_attestation(&digest).unwrap(),
        artifact.manifest_bytes.clone(),
    ];
    (digest, files)
}

fn command(id: u64, kind: CommandKind, artifact: Digest) -> AgentCommand {
    AgentCommand {
        id: CommandId(id),
        epoch: 1,
        pipeline: "sample-code".into(),
        target: target(),
        box_id: BoxId("box-1".into()),
        kind,
        artifact,
        download_path: format!("/artifacts/{}", artifact.hex()),
        hook_timeout: gantry_model::Duration::from_minutes(5),
        health_check_timeout: gantry_model::Duration::from_minutes(1),
        health_check: None,
        deadline: jiff::Timestamp::now() + jiff::SignedDuration::from_mins(10),
    }
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
        .args(["--box-id", "box-1", "--environment", "prod", "--region", "local-1"])
        .args(["--zone", "local-1a"])
        .arg("--box-var")
        .arg(format!("GANTRY_BOX_DIR={}", dir.join("box").display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    Process(child)
}

fn wait_until(dir: &Path, what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !done() {
        let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
        assert!(Instant::now() < until, "timed out waiting for {what}\nagent log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const APPSPEC: &str = "version: 0.0
os: linux
hooks:
  ApplicationStart:
    - location: scripts/start.sh
      timeout: 120
";

/// Hangs when the revision carries `settings/hang`; records every completed start.
const START: &str = "#!/bin/sh
set -eu
if [ -f settings/hang ]; then
  echo $$ > \"$GANTRY_BOX_DIR/hang.pid\"
  sleep 120
fi
cat settings/version >> \"$GANTRY_BOX_DIR/starts\"
";

#[test]
fn an_agent_killed_mid_deployment_reports_it_and_converges_on_the_next_command() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("box")).unwrap();
    let _hung = GroupGuard(dir.join("box/hang.pid"));
    let keys = KeyDirectory::new(dir.join("keys"));
    keys.generate(jiff::Timestamp::now()).unwrap();
    publish_blocks(&keys, &dir.join("blocks.json"));
    let trust = serde_json::json!({
        "trusted_keys": keys.trusted_keys_path(),
        "trust_root_key": keys.trust_root_public().unwrap(),
        "block_list": dir.join("blocks.json"),
        "builder_ids": [builder_id(BuilderRole::Service, Sandbox::detect())],
        "review_required": false,
        "trusted_bases": [TRUSTED_BASE_ROOT],
    });
    std::fs::write(dir.join("trust.json"), trust.to_string()).unwrap();
    std::fs::write(dir.join("agent.token"), "box-1-token").unwrap();

    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("scripts")).unwrap();
    std::fs::create_dir_all(repo.join("settings")).unwrap();
    git(&repo, &["init", "--quiet", "--initial-branch=main", "."]);
    std::fs::write(repo.join("appspec.yml"), APPSPEC).unwrap();
    std::fs::write(repo.join("scripts/start.sh"), START).unwrap();
    std::fs::write(repo.join("settings/version"), "v1\n").unwrap();
    std::fs::write(repo.join("settings/hang"), "").unwrap();
    commit(&repo, "v1 hangs at start");
    let store = Store::new(dir.join("store"));
    let (first, first_files) = build(dir, &store);
    std::fs::remove_file(repo.join("settings/hang")).unwrap();
    std::fs::write(repo.join("settings/version"), "v2\n").unwrap();
    commit(&repo, "v2 starts");
    let (second, second_files) = build(dir, &store);

    let shared = Shared::default();
    {
        let mut controller = shared.lock().unwrap();
        controller.artifacts.insert(first.hex(), first_files);
        controller.artifacts.insert(second.hex(), second_files);
        controller.commands.push(command(1, CommandKind::Deploy, first));
    }
    let (_runtime, url) = start_controller(shared.clone());

    // The agent takes command 1 and hangs in ApplicationStart; kill -9 it there.
    let agent = start_agent(dir, &url);
    wait_until(dir, "the hook to hang", || dir.join("box/hang.pid").exists());
    drop(agent);
    let pid = std::fs::read_to_string(dir.join("box/hang.pid")).unwrap();
    let _ =
        Command::new("kill").args(["-s", "KILL", "--"]).arg(format!("-{}", pid.trim())).status();
    let reports_before = shared.lock().unwrap().reports.len();

    // Restarted, it reports command 1 failed by the restart, without carrying it out again.
    let _agent = start_agent(dir, &url);
    let outcome_of = |id: u64| {
        let controller = shared.lock().unwrap();
        controller.reports.last().and_then(|r| {
            r.pipelines.iter().flat_map(|p| &p.outcomes).find(|o| o.command.0 == id).cloned()
        })
    };
    wait_until(dir, "command 1's outcome", || outcome_of(1).is_some());
    let interrupted = outcome_of(1).unwrap();
    assert!(!interrupted.succeeded);
    assert!(interrupted.detail.contains("restarted"), "{}", interrupted.detail);
    assert!(interrupted.detail.contains("after AfterInstall"), "{}", interrupted.detail);
    assert!(shared.lock().unwrap().reports.len() > reports_before);

    // The controller repairs the box with v2, built on v1 (which the box holds).
    shared.lock().unwrap().commands.push(command(2, CommandKind::Repair, second));
    wait_until(dir, "command 2's outcome", || outcome_of(2).is_some());
    let repaired = outcome_of(2).unwrap();
    assert!(repaired.succeeded, "{}", repaired.detail);
    let last = shared.lock().unwrap().reports.last().unwrap().clone();
    assert_eq!(last.pipelines[0].running, Some(second));
    assert_eq!(last.pipelines[0].health, Health::Healthy);
    let starts = std::fs::read_to_string(dir.join("box/starts")).unwrap();
    assert_eq!(starts, "v2\n", "v1 never completed a start, and was not run again");
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
