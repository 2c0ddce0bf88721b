//! Controller benchmarks, printed (not asserted): `cargo bench -p gantry-server`.
//!
//! - API latency (p50/p99) of agent reports while 1,000 agents long-poll on loopback;
//! - restart to resume with 1,000 pipelines of state (goal < 1 s);
//! - resident memory with 1,000 pipelines (goal < 200 MB).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gantry_server::auth::Principal;
use gantry_server::server::{self, Config, Controller};
use serde_json::json;

const PIPELINES: usize = 1000;
const AGENTS: usize = 1000;
/// Reports timed while the agents long-poll.
const TIMED_REPORTS: usize = 4000;
const REPORTERS: usize = 8;

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

/// The example organisation plus `PIPELINES` pipelines of one team.
fn organisation(root: &Path) {
    // The example organisation's own files (`examples/` also holds other demos).
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::create_dir_all(root).unwrap();
    for part in ["topology.yaml", "policy.yaml", "org", "teams", "services"] {
        let from = examples.join(part);
        if from.is_dir() {
            copy_tree(&from, &root.join(part));
        } else {
            std::fs::copy(&from, root.join(part)).unwrap();
        }
    }
    let bench = root.join("services/bench");
    std::fs::create_dir_all(&bench).unwrap();
    for n in 0..PIPELINES {
        std::fs::write(
            bench.join(format!("p{n}.yaml")),
            format!(
                "extends: ../../teams/payments.yaml\npipeline: bench-{n}\nservice: bench-{n}\nkind: code\n\
                 sources:\n  - repository: https://git.example.com/bench/{n}.git\n    branch: main\n\
                 build:\n  command: make\n  outputs: [out]\n"
            ),
        )
        .unwrap();
    }
}

/// What the allocator holds for live allocations, in MB: resident memory less what the
/// allocator keeps freed but unreturned (glibc's counters).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use_megabytes() -> Option<f64> {
    /// glibc's `struct mallinfo2`.
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> MallInfo2;
    }
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { mallinfo2() };
    Some((info.uordblks + info.hblkhd) as f64 / (1024.0 * 1024.0))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use_megabytes() -> Option<f64> {
    None
}

fn memory() -> String {
    let heap = heap_in_use_megabytes()
        .map(|heap| format!(", of which {heap:.0} MB live heap"))
        .unwrap_or_default();
    format!("{:.0} MB resident{heap}", rss_megabytes())
}

fn rss_megabytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    let kilobytes: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kilobytes / 1024.0
}

struct Running {
    controller: Arc<Controller>,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), gantry_server::Error>>>,
}

fn start(runtime: &tokio::runtime::Runtime, config: &Config) -> Running {
    let (controller, _) = server::open(config, gantry_model::Timestamp::now()).unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rounds = server::start_rounds(controller.clone(), config.organisation.clone()).unwrap();
    let served = runtime.spawn(server::serve(controller.clone(), listener, rounds, async move {
        let _ = stopped.await;
    }));
    Running { controller, url, stop: Some(stop), served: Some(served) }
}

fn stop(runtime: &tokio::runtime::Runtime, mut running: Running) {
    let _ = running.stop.take().unwrap().send(());
    runtime.block_on(running.served.take().unwrap()).unwrap().unwrap();
}

fn wait_for_pipelines(controller: &Controller, count: usize) -> Duration {
    let started = Instant::now();
    while controller.pipeline_views().len() < count {
        assert!(started.elapsed() < Duration::from_secs(300), "pipelines never loaded");
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

fn main() {
    let temp = tempfile::tempdir().unwrap();
    let org = temp.path().join("org");
    organisation(&org);
    let mut config = Config::new(temp.path().join("data"), "127.0.0.1:0".parse().unwrap());
    config.organisation = Some(org);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    let started = Instant::now();
    let running = start(&runtime, &config);
    wait_for_pipelines(&running.controller, PIPELINES);
    let first = started.elapsed();
    let total = running.controller.pipeline_views().len();
    println!("first start: {total} pipelines loaded and committed in {:.2} s", first.as_secs_f64());
    println!("memory with {total} pipelines: {} (goal < 200 MB resident)", memory());

    // 1,000 agents, each of its own box.
    let tokens: Vec<String> = (0..AGENTS)
        .map(|n| {
            let principal = Principal::Agent {
                box_id: format!("box-{n}"),
                service: format!("bench-{}", n % PIPELINES),
            };
            running
                .controller
                .issue_token(principal, "bench", gantry_model::Timestamp::now())
                .unwrap()
                .1
        })
        .collect();
    let agent = |timeout: u64| -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(timeout)))
            .build()
            .into()
    };
    for (n, token) in tokens.iter().enumerate() {
        let body = json!({"protocol_version": 1, "box_id": format!("box-{n}"), "highest_epoch_seen": 0,
                          "target": {"environment": "prod", "region": "us-east-1", "zone": "use1-az1"}});
        let response = agent(30)
            .post(&format!("{}/api/v1/agent/boxes/box-{n}/register", running.url))
            .header("authorization", &format!("Bearer {token}"))
            .send_json(body)
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let polling = Arc::new(AtomicBool::new(true));
    let pollers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, token)| {
            let (url, token, polling) = (running.url.clone(), token.clone(), polling.clone());
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let client = agent(60);
                    while polling.load(Ordering::SeqCst) {
                        let _ = client
                            .get(&format!("{url}/api/v1/agent/boxes/box-{n}/commands?wait=5s"))
                            .header("authorization", &format!("Bearer {token}"))
                            .call();
                    }
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let reporters: Vec<_> = (0..REPORTERS)
        .map(|worker| {
            let (url, tokens) = (running.url.clone(), tokens.clone());
            std::thread::spawn(move || {
                let client = agent(30);
                let mut latencies = Vec::new();
                for i in 0..TIMED_REPORTS / REPORTERS {
                    let n = (worker * 131 + i * 7) % AGENTS;
                    let body = json!({"observed_at": gantry_model::Timestamp::now().to_string(),
                                      "highest_epoch_seen": 1, "pipelines": [{"pipeline": format!("bench-{}", n % PIPELINES),
                                      "running": null, "health": "healthy"}]});
                    let started = Instant::now();
                    let response = client
                        .post(&format!("{url}/api/v1/agent/boxes/box-{n}/report"))
                        .header("authorization", &format!("Bearer {}", tokens[n]))
                        .send_json(body)
                        .unwrap();
                    latencies.push(started.elapsed());
                    assert_eq!(response.status(), 200);
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> =
        reporters.into_iter().flat_map(|r| r.join().unwrap()).collect();
    latencies.sort();
    println!(
        "agent report latency with {AGENTS} agents long-polling: p50 {:.2} ms, p99 {:.2} ms ({} reports, {REPORTERS} clients)",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len()
    );
    polling.store(false, Ordering::SeqCst);
    for poller in pollers {
        poller.join().unwrap();
    }
    println!("memory after the agents (their clients' buffers included): {}", memory());
    let epoch = running.controller.epoch();
    stop(&runtime, running);

    // Restart: open the data directory and resume every pipeline from the store.
    let started = Instant::now();
    let running = start(&runtime, &config);
    while running.controller.epoch() <= epoch {
        std::thread::sleep(Duration::from_millis(1));
    }
    let resumed = started.elapsed();
    let views = wait_for_pipelines(&running.controller, PIPELINES);
    let reloaded = Instant::now();
    while running.controller.organisation().loaded_at.is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "restart to resume with {total} pipelines: {:.0} ms to the new epoch's first round, serving \
         (goal < 1 s); {:.0} ms more to every pipeline's view; {:.0} ms more to re-read the \
         organisation's files",
        resumed.as_secs_f64() * 1e3,
        views.as_secs_f64() * 1e3,
        reloaded.elapsed().as_secs_f64() * 1e3
    );
    stop(&runtime, running);
}
