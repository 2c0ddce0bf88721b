//! Both load balancers through one check: real sample-service boxes on loopback, registered and
//! taking traffic once healthy; a deregistered box drains (a slow request in flight finishes) and
//! then takes no more traffic. HAProxy is Debian's, started on free ports with a generated
//! configuration and killed afterwards.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gantry_fleet::balancer::{Backend, EventKind, LoadBalancer, healthy_over_time};
use gantry_fleet::builtin::BuiltInLoadBalancer;
use gantry_fleet::haproxy::{self, Haproxy};
use gantry_fleet::health::HealthProbe;
use gantry_fleet::sample::{SampleConfig, router};

/// Sample-service boxes served in this process; dropping them stops them.
struct Boxes {
    runtime: tokio::runtime::Runtime,
    addresses: Vec<SocketAddr>,
}

impl Boxes {
    fn start(configs: &[SampleConfig]) -> Boxes {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let addresses = configs
            .iter()
            .map(|config| {
                let listener =
                    runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
                let address = listener.local_addr().unwrap();
                let app = router(config.clone());
                runtime.spawn(async move { axum::serve(listener, app).await });
                address
            })
            .collect();
        Boxes { runtime, addresses }
    }
}

impl Drop for Boxes {
    fn drop(&mut self) {
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread().build().unwrap(),
        );
        runtime.shutdown_background();
    }
}

fn probe() -> HealthProbe {
    HealthProbe {
        path: "/health".into(),
        port: 0,
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    }
}

fn version(name: &str, latency_ms: u64) -> SampleConfig {
    SampleConfig { version: name.into(), added_latency_ms: latency_ms, ..SampleConfig::default() }
}

fn get(frontend: SocketAddr) -> (u16, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).build(),
    );
    let mut response = agent.get(format!("http://{frontend}/")).call().unwrap();
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
}

fn wait_for_healthy(balancer: &mut dyn LoadBalancer, expected: &[&str]) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let mut healthy = balancer.healthy().unwrap();
        healthy.sort();
        if healthy == expected {
            return;
        }
        assert!(Instant::now() < until, "healthy {healthy:?}, waiting for {expected:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Registers two boxes, sends traffic, drains one with a slow request in flight.
fn check_drain_then_stop(balancer: &mut dyn LoadBalancer, frontend: SocketAddr, boxes: &Boxes) {
    let a = Backend { name: "box-a".into(), address: boxes.addresses[0] };
    let b = Backend { name: "box-b".into(), address: boxes.addresses[1] };
    balancer.register(&a).unwrap();
    balancer.register(&b).unwrap();
    wait_for_healthy(balancer, &["box-a", "box-b"]);
    let answers: Vec<String> = (0..10).map(|_| get(frontend).1).collect();
    assert!(answers.iter().any(|a| a == "ok a\n"), "{answers:?}");
    assert!(answers.iter().any(|a| a == "ok b\n"), "{answers:?}");

    // Requests to box-a take 400 ms; send until one is in flight there, then deregister it.
    let slow = std::thread::spawn(move || (0..2).map(|_| get(frontend)).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    balancer.deregister("box-a", Duration::from_secs(5)).unwrap();
    let drained_in = started.elapsed();
    let slow_answers = slow.join().unwrap();
    assert!(slow_answers.iter().all(|(status, _)| *status == 200), "{slow_answers:?}");
    eprintln!("drained in {drained_in:?}");

    wait_for_healthy(balancer, &["box-b"]);
    let after: Vec<String> = (0..6).map(|_| get(frontend).1).collect();
    assert!(after.iter().all(|a| a == "ok b\n"), "only box-b takes traffic: {after:?}");
    // Deregistering twice, or a box never registered, does nothing.
    balancer.deregister("box-a", Duration::from_secs(1)).unwrap();
    balancer.deregister("box-z", Duration::from_secs(1)).unwrap();
}

#[test]
fn built_in_balancer_drains_then_stops_and_logs_every_change() {
    let boxes = Boxes::start(&[version("a", 400), version("b", 0)]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut balancer = BuiltInLoadBalancer::start(any, any, probe()).unwrap();
    let frontend = balancer.frontend();
    check_drain_then_stop(&mut balancer, frontend, &boxes);

    let events = balancer.events();
    let kinds: Vec<(String, EventKind)> =
        events.iter().map(|e| (e.backend.clone(), e.kind)).collect();
    assert_eq!(kinds[0], ("box-a".into(), EventKind::Registered));
    assert_eq!(kinds[1], ("box-b".into(), EventKind::Registered));
    assert!(kinds.contains(&("box-a".into(), EventKind::Healthy)));
    assert_eq!(kinds.last().unwrap(), &("box-a".into(), EventKind::Deregistered));
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at), "timestamps in order");
    let capacity: Vec<usize> = healthy_over_time(&events).into_iter().map(|(_, n)| n).collect();
    assert_eq!(capacity.iter().max(), Some(&2));
    assert_eq!(capacity.last(), Some(&1));

    let metrics = balancer.metrics();
    assert!(metrics.contains("gantry_lb_requests_total{backend=\"box-a\"}"), "{metrics}");
    assert!(metrics.contains("gantry_lb_requests_total{backend=\"box-b\"}"), "{metrics}");
    let status = balancer.status();
    assert_eq!(status.len(), 1);
    assert!(status[0].requests >= 6);
}

/// HAProxy in the foreground, killed when dropped.
struct HaproxyProcess(std::process::Child);

impl Drop for HaproxyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn haproxy_drains_then_stops_through_its_runtime_api() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let frontend = free_port();
    let config_path = dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, haproxy::config(frontend, &socket, &probe())).unwrap();
    let _process = HaproxyProcess(Haproxy::spawn(&config_path, &socket).unwrap());
    let boxes = Boxes::start(&[version("a", 400), version("b", 0)]);
    let mut balancer = Haproxy::new(&socket, probe());
    check_drain_then_stop(&mut balancer, frontend, &boxes);
    assert_eq!(balancer.servers().unwrap().len(), 1, "box-a was deleted from the backend");
}
