//! Against a real Prometheus server: Prometheus and Gantry's own scraper scrape the same test
//! endpoint; Gantry's Prometheus source must read the same values and drive the same alarm
//! states as its own scraper.
//!
//! Needs `prometheus` on PATH (Debian's `prometheus` package). Without it the test prints a skip
//! notice and passes, unless `GANTRY_REQUIRE_PROMETHEUS=1`, when it fails. It takes about a
//! minute: two phases (healthy, then a fault and latency breach) each long enough for a full
//! 10-second alarm period of data in both stores.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gantry_alarms::AlarmState;
use gantry_alarms::alarm_set::AlarmSet;
use gantry_alarms::exposition::ExpositionLimits;
use gantry_alarms::fetch::Client;
use gantry_alarms::prometheus::{PrometheusQuery, PrometheusSource};
use gantry_alarms::scrape::{ScrapeTarget, Scraper};
use gantry_alarms::series::{Labels, SeriesKind, Store, StoreLimits};
use gantry_model::pipeline::AlarmDefinition;
use support::TestServer;

/// Longest wait for Prometheus to start or to have scraped a phase's values.
const DEADLINE: Duration = Duration::from_secs(40);
/// The alarms' period: CloudWatch's shortest high-resolution period the test can fill quickly.
const PERIOD_MS: i64 = 10_000;

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process this test started (Prometheus, node exporter); killed by its own handle when
/// dropped, so a failing test leaves nothing running.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The endpoint's state: a phase switch, and counters that grow with time.
struct Endpoint {
    started: Instant,
    breach_since_ms: AtomicU64,
}

impl Endpoint {
    /// Requests grow by 20 a second; once breaching, half of the new requests fault and latency
    /// jumps from 0.1 s to 0.9 s.
    fn exposition(&self) -> String {
        let elapsed = self.started.elapsed().as_millis() as u64;
        let requests = elapsed / 50;
        let breach_since = self.breach_since_ms.load(Ordering::SeqCst);
        let (faults, latency) =
            if elapsed >= breach_since { ((elapsed - breach_since) / 100, 0.9) } else { (0, 0.1) };
        format!(
            "# TYPE requests_total counter\nrequests_total{{api=\"create\"}} {requests}\n\
             # TYPE faults_total counter\nfaults_total{{api=\"create\"}} {faults}\n\
             # TYPE latency_seconds gauge\nlatency_seconds{{api=\"create\"}} {latency}\n"
        )
    }
}

fn alarms() -> BTreeMap<String, AlarmDefinition> {
    let text = "
high_latency:
  metric: {metric: latency_seconds, statistic: Maximum, period: 10s, evaluation_periods: 1,
           comparison: GreaterThanThreshold, threshold: 0.5}
high_fault_rate:
  metric: {metric: faults_total, divide_by: requests_total, statistic: Sum, period: 10s,
           evaluation_periods: 1, comparison: GreaterThanThreshold, threshold: 0.1}
rollback:
  composite: ALARM(high_latency) OR ALARM(high_fault_rate)
";
    serde_saphyr::from_str(text).unwrap()
}

/// Waits until a whole alarm period after `since` has passed (plus scrape slack), then
/// evaluates the alarms over both stores and returns their states side by side.
fn states_after(
    since_ms: i64,
    own: &Mutex<Store>,
    source: &PrometheusSource,
    scope: &Labels,
) -> Vec<(String, AlarmState, AlarmState, String)> {
    // The newest period evaluated at `now` ends at `now` rounded down to 10 s; it must start
    // after `since` with two seconds of slack for the scrapes.
    let ready = (since_ms + 2_000 + PERIOD_MS - 1) / PERIOD_MS * PERIOD_MS + PERIOD_MS;
    while now_ms() < ready + 1_500 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let now = now_ms();
    let mut from_prometheus = Store::new(StoreLimits::default());
    source.backfill(&mut from_prometheus, now - 4 * PERIOD_MS, now, 1_000).unwrap();
    let mut own_alarms = AlarmSet::new(&alarms(), scope.clone()).unwrap();
    let mut prometheus_alarms = AlarmSet::new(&alarms(), scope.clone()).unwrap();
    own_alarms.evaluate(&own.lock().unwrap(), now);
    prometheus_alarms.evaluate(&from_prometheus, now);
    own_alarms
        .names()
        .map(|name| {
            let own = own_alarms.status(name).unwrap();
            let theirs = prometheus_alarms.status(name).unwrap();
            let reasons = format!("own: {} | prometheus: {}", own.reason, theirs.reason);
            (name.to_string(), own.state, theirs.state, reasons)
        })
        .collect()
}

#[test]
fn prometheus_source_matches_own_scraper() {
    let Some(prometheus) = find_on_path("prometheus") else {
        if std::env::var("GANTRY_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!(
                "GANTRY_REQUIRE_PROMETHEUS=1 but `prometheus` is not on PATH (apt-get install prometheus)"
            );
        }
        eprintln!(
            "skipped: `prometheus` is not on PATH; set GANTRY_REQUIRE_PROMETHEUS=1 to require it"
        );
        return;
    };

    let endpoint =
        Arc::new(Endpoint { started: Instant::now(), breach_since_ms: AtomicU64::new(u64::MAX) });
    let server = {
        let endpoint = endpoint.clone();
        TestServer::start(move |_| (200, endpoint.exposition()))
    };
    let instance = server.address.trim_start_matches("http://").to_string();
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: gantry-test\n    static_configs:\n      - targets: ['{instance}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Started(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", directory.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new(Duration::from_secs(2), 1 << 20);
    let started = Instant::now();
    while client.get(&format!("{base}/-/ready"), &[]).ok().map(|r| r.status) != Some(200) {
        assert!(started.elapsed() < DEADLINE, "prometheus did not become ready at {base}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Prometheus's own /metrics is a large real exposition (histograms, summaries, escaped help
    // texts): Gantry's parser reads all of it.
    let own_metrics = Scraper::new(
        Client::default(),
        vec![ScrapeTarget { url: format!("{base}/metrics"), labels: Labels::new() }],
        ExpositionLimits::default(),
    )
    .unwrap();
    let samples =
        own_metrics.fetch(&own_metrics.targets()[0]).expect("parse Prometheus's /metrics");
    assert!(samples.len() > 100, "only {} samples in Prometheus's /metrics", samples.len());
    assert!(samples.iter().any(|s| s.name.ends_with("_bucket") && s.kind == SeriesKind::Counter));

    // Gantry's own scraper, labelled as Prometheus labels the target, scraping every second.
    let scope: Labels = [("job", "gantry-test"), ("instance", instance.as_str())]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let target = ScrapeTarget { url: server.url("/metrics"), labels: scope.clone() };
    let scraper =
        Scraper::new(Client::default(), vec![target.clone()], ExpositionLimits::default()).unwrap();
    let own = Arc::new(Mutex::new(Store::new(StoreLimits::default())));
    let stop = Arc::new(AtomicBool::new(false));
    let scraping = {
        let (scraper, own, stop) = (scraper.clone(), own.clone(), stop.clone());
        std::thread::spawn(move || scraper.run(&own, Duration::from_secs(1), &stop, now_ms, |_| {}))
    };
    let queries = ["requests_total", "faults_total", "latency_seconds"]
        .iter()
        .map(|name| PrometheusQuery {
            name: name.to_string(),
            promql: format!("{name}{{job=\"gantry-test\"}}"),
            kind: if name.ends_with("_total") { SeriesKind::Counter } else { SeriesKind::Gauge },
        })
        .collect();
    let source = PrometheusSource::new(client.clone(), &base, queries);

    // Same values: what Prometheus last scraped equals what Gantry's scraper reads, for each
    // series, once the values are steady (latency) or within one scrape's growth (counters).
    let started = Instant::now();
    loop {
        let ours = scraper.fetch(&target).unwrap();
        let theirs = source.instant("latency_seconds{job=\"gantry-test\"}", now_ms()).unwrap();
        if let ([series], Some(sample)) =
            (theirs.as_slice(), ours.iter().find(|s| s.name == "latency_seconds"))
        {
            let mut expected = sample.labels.clone();
            expected.extend(scope.clone());
            assert_eq!(series.labels, expected);
            assert_eq!(series.points[0].1, sample.value);
            let requests = source.instant("requests_total", now_ms()).unwrap();
            let ours_requests = ours.iter().find(|s| s.name == "requests_total").unwrap().value;
            let difference = ours_requests - requests[0].points[0].1;
            // Requests grow by 20 a second and the reads are a scrape apart, more on a loaded
            // machine: within 10 s of growth is the same counter.
            assert!((-200.0..=200.0).contains(&difference), "counter read {difference} apart");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "prometheus never scraped the endpoint");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Healthy phase: both stores drive every alarm to OK.
    let healthy = states_after(now_ms(), &own, &source, &scope);
    for (name, own_state, prometheus_state, reasons) in &healthy {
        assert_eq!(
            (own_state, prometheus_state),
            (&AlarmState::Ok, &AlarmState::Ok),
            "{name}: {reasons}"
        );
    }

    // Breach: faults and latency rise; both stores drive every alarm to ALARM.
    let breach_at = now_ms();
    endpoint.breach_since_ms.store(endpoint.started.elapsed().as_millis() as u64, Ordering::SeqCst);
    let breached = states_after(breach_at, &own, &source, &scope);
    for (name, own_state, prometheus_state, reasons) in &breached {
        assert_eq!(
            (own_state, prometheus_state),
            (&AlarmState::Alarm, &AlarmState::Alarm),
            "{name}: {reasons}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    scraping.join().unwrap();
    println!("healthy: {healthy:?}\nbreached: {breached:?}");
}

/// Node exporter (Debian's `prometheus-node-exporter`, which `apt-get install prometheus`
/// brings in as a recommendation) serves a large, varied real exposition: Gantry's parser
/// reads all of it.
#[test]
fn node_exporter_output_parses() {
    let Some(exporter) = find_on_path("prometheus-node-exporter") else {
        if std::env::var("GANTRY_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!(
                "GANTRY_REQUIRE_PROMETHEUS=1 but `prometheus-node-exporter` is not on PATH (apt-get install prometheus)"
            );
        }
        eprintln!("skipped: `prometheus-node-exporter` is not on PATH");
        return;
    };
    let port = free_port();
    let _exporter = Started(
        Command::new(exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-node-exporter"),
    );
    let target =
        ScrapeTarget { url: format!("http://127.0.0.1:{port}/metrics"), labels: Labels::new() };
    let scraper =
        Scraper::new(Client::default(), vec![target.clone()], ExpositionLimits::default()).unwrap();
    let started = Instant::now();
    let samples = loop {
        match scraper.fetch(&target) {
            Ok(samples) => break samples,
            Err(error) if error.to_string().contains("GET ") && started.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => panic!("node exporter's exposition did not parse: {error}"),
        }
    };
    assert!(samples.len() > 200, "only {} samples from node exporter", samples.len());
    let mut store = Store::new(StoreLimits::default());
    let stored = gantry_alarms::push::ingest(&mut store, &samples, &Labels::new(), 1_000).unwrap();
    println!("node exporter: {stored} samples parsed and stored");
}
