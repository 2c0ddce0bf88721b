//! The example sample service (examples/sample-service) deployed twice through the agent's
//! lifecycle behind the built-in load balancer, with the real `gantry sample-service` binary its
//! hooks start: the box takes traffic only once healthy, is deregistered before ApplicationStop
//! stops it, and registered again only after ValidateService and its health check pass.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry_agent::hooks::HookEnvironment;
use gantry_agent::lifecycle::{self, Deployment, PipelineDirectory};
use gantry_fleet::balancer::{Backend, EventKind};
use gantry_fleet::builtin::{BuiltInClient, BuiltInLoadBalancer};
use gantry_fleet::health::HealthProbe;
use gantry_fleet::traffic::BalancedBox;
use gantry_model::Timestamp;
use gantry_supply::artifact::{Origin, pack};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-service")
}

/// Kills the service the hooks started, whatever the test's outcome.
struct ServiceGuard(PathBuf);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("service.pid")) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The example revision with its configuration's version set to `version`.
fn revision(dir: &Path, version: &str) -> (gantry_model::Digest, Vec<u8>) {
    let checkout = dir.join(format!("src-{version}"));
    for relative in [
        "appspec.yml",
        "scripts/stop.sh",
        "scripts/start.sh",
        "scripts/check-config.sh",
        "scripts/validate.sh",
    ] {
        let to = checkout.join(relative);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example().join(relative), &to).unwrap();
    }
    let config = std::fs::read_to_string(example().join("config/service.yml")).unwrap();
    std::fs::create_dir_all(checkout.join("config")).unwrap();
    std::fs::write(
        checkout.join("config/service.yml"),
        config.replace("version: v1", &format!("version: {version}")),
    )
    .unwrap();
    let origin = Origin {
        service: "sample".into(),
        pipeline: "sample-code".into(),
        repository: "examples/sample-service".into(),
        branch: "main".into(),
        commit: format!("{version:0>40}"),
    };
    let outputs = vec!["appspec.yml".to_string(), "scripts".to_string(), "config".to_string()];
    let package = dir.join(format!("{version}.tar.zst"));
    let record = pack(&checkout, &outputs, &origin, 0, &package).unwrap();
    (record.digest, std::fs::read(&package).unwrap())
}

/// When each lifecycle event started, from the deployment's script log.
fn event_times(log: &Path) -> BTreeMap<String, Timestamp> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (at, rest) = line.split_once(' ')?;
            let event = rest.strip_prefix("LifecycleEvent - ")?;
            Some((event.to_string(), at.parse().ok()?))
        })
        .collect()
}

fn get(frontend: SocketAddr) -> String {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).build(),
    );
    agent.get(format!("http://{frontend}/")).call().unwrap().body_mut().read_to_string().unwrap()
}

fn answer_becomes(frontend: SocketAddr, expected: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(frontend);
        if answer == expected {
            return;
        }
        assert!(Instant::now() < until, "the balancer answers {answer:?}, not {expected:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_example_service_deploys_behind_the_balancer_draining_before_every_stop() {
    let dir = tempfile::tempdir().unwrap();
    let box_dir = dir.path().join("box-1");
    std::fs::create_dir_all(&box_dir).unwrap();
    let _service = ServiceGuard(box_dir.clone());
    let port = free_port();
    let probe = HealthProbe {
        path: "/health".into(),
        port: 0,
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    };
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let balancer = BuiltInLoadBalancer::start(any, any, probe.clone()).unwrap();
    let backend =
        Backend { name: "box-1".into(), address: SocketAddr::from(([127, 0, 0, 1], port)) };
    let mut traffic = BalancedBox {
        balancer: Box::new(BuiltInClient::new(balancer.admin())),
        backend,
        probe,
        drain: Duration::from_secs(2),
    };
    let directory = PipelineDirectory::open(&dir.path().join("agent"), "sample-code").unwrap();
    let variables: BTreeMap<String, String> = [
        ("GANTRY_BOX_DIR", box_dir.display().to_string()),
        ("GANTRY_BOX_PORT", port.to_string()),
        ("GANTRY_BIN", env!("CARGO_BIN_EXE_gantry").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let mut deploy = |id: &str, version: &str| {
        let (digest, package) = revision(dir.path(), version);
        directory.stage(&digest, &package).unwrap();
        let deployment = Deployment {
            environment: HookEnvironment {
                application_name: "sample".into(),
                deployment_id: id.into(),
                deployment_group_name: "prod/local/zone-a".into(),
                deployment_group_id: "prod-local-zone-a".into(),
                box_variables: variables.clone(),
            },
            pipeline: "sample-code".into(),
            digest,
            lifecycle_timeout: Duration::from_secs(120),
            ignore_application_stop_failures: false,
            health_check: None,
            health_check_timeout: Duration::from_secs(60),
        };
        lifecycle::run(&directory, &deployment, Some(&mut traffic), &mut |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        event_times(&directory.logs().join(format!("{id}.log")))
    };

    deploy("d-1", "v1");
    answer_becomes(balancer.frontend(), "ok v1\n");
    let second = deploy("d-2", "v2");
    answer_becomes(balancer.frontend(), "ok v2\n");

    let events = balancer.events();
    let at = |kind: EventKind, nth: usize| {
        events.iter().filter(|e| e.kind == kind).nth(nth).unwrap_or_else(|| panic!("{events:?}")).at
    };
    // The second deployment: deregistered before ApplicationStop stopped v1, registered again
    // only after ValidateService passed.
    assert!(at(EventKind::Deregistered, 0) < second["ApplicationStop"], "{events:?} {second:?}");
    assert!(at(EventKind::Registered, 1) > second["ValidateService"], "{events:?} {second:?}");
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Registered,
            EventKind::Healthy,
            EventKind::Deregistered,
            EventKind::Registered,
            EventKind::Healthy
        ],
        "{events:?}"
    );
}
