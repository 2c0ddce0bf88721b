//! Benchmarks of the alarm engine, run with `cargo bench -p gantry-alarms` (release build, one
//! thread). They print measurements; they assert nothing about time.
//!
//! 1. Data points ingested per second per core (the store, counters and gauges).
//! 2. Data points evaluated per second per core (metric alarms reading their ranges).
//! 3. Exposition parsing, samples per second.
//! 4. Breach to state change: the processing time from a scrape showing a breach to the alarm's
//!    transition (local HTTP endpoint, parse, store, evaluate), and the logical delay the
//!    period/cadence alignment adds.
//! 5. Side by side with Prometheus: `promtool test rules` evaluating equivalent alerting rules
//!    over the same series as `gantry alarm test` (skipped when `promtool` is not on PATH).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use gantry_alarms::alarm_set::AlarmSet;
use gantry_alarms::alarm_test;
use gantry_alarms::exposition::{self, ExpositionLimits};
use gantry_alarms::fetch::Client;
use gantry_alarms::scrape::{ScrapeTarget, Scraper};
use gantry_alarms::series::{Labels, SeriesKind, Store, StoreLimits};
use gantry_model::pipeline::AlarmDefinition;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn rate(count: f64, elapsed: Duration) -> String {
    let per_second = count / elapsed.as_secs_f64();
    if per_second >= 1e6 {
        format!("{:.2} M/s", per_second / 1e6)
    } else {
        format!("{:.0} /s", per_second)
    }
}

/// A store of `boxes` boxes × 3 series, one sample every 10 s for `minutes`.
fn filled_store(boxes: usize, minutes: i64) -> (Store, usize, Duration) {
    let mut store =
        Store::new(StoreLimits { max_series: boxes * 3 + 10, ..StoreLimits::default() });
    let keys: Vec<Labels> = (0..boxes)
        .map(|b| labels(&[("region", "eu".to_string()), ("box", format!("b{b}"))]))
        .collect();
    let started = Instant::now();
    let mut count = 0;
    for step in 0..minutes * 6 {
        let time = step * 10_000;
        for (index, key) in keys.iter().enumerate() {
            let requests = (step * 50 + index as i64) as f64;
            store.ingest("requests_total", key, SeriesKind::Counter, time, requests).unwrap();
            store
                .ingest("faults_total", key, SeriesKind::Counter, time, (step / 10) as f64)
                .unwrap();
            let latency = 0.1 + (index % 7) as f64 * 0.01;
            store.ingest("latency_seconds", key, SeriesKind::Gauge, time, latency).unwrap();
            count += 3;
        }
    }
    (store, count, started.elapsed())
}

fn alarm_definitions(count: usize) -> BTreeMap<String, AlarmDefinition> {
    let mut text = String::new();
    for index in 0..count {
        let threshold = 0.2 + index as f64 * 0.001;
        let _ = write!(
            text,
            "latency_{index}:\n  metric: {{metric: latency_seconds, statistic: p99, period: 1m, \
             evaluation_periods: 3, comparison: GreaterThanThreshold, threshold: {threshold}}}\n\
             faults_{index}:\n  metric: {{metric: faults_total, divide_by: requests_total, \
             statistic: Sum, period: 1m, evaluation_periods: 5, datapoints_to_alarm: 3, \
             comparison: GreaterThanThreshold, threshold: 0.01}}\n"
        );
    }
    text.push_str("any:\n  composite: ALARM(latency_0) OR ALARM(faults_0)\n");
    serde_saphyr::from_str(&text).unwrap()
}

fn bench_ingest_and_evaluate() {
    let (store, ingested, elapsed) = filled_store(200, 120);
    println!(
        "ingest:    {ingested} data points (200 boxes x 3 series, 2 h at 10 s) in {:.1} ms: {} per core",
        elapsed.as_secs_f64() * 1e3,
        rate(ingested as f64, elapsed)
    );
    let mut alarms = AlarmSet::new(&alarm_definitions(10), Labels::new()).unwrap();
    // Each latency alarm reads 5 periods x 200 boxes x 6 samples; each fault alarm 7 periods x
    // 2 series x 200 boxes x 6 samples.
    let per_evaluation = 10 * (5 * 200 * 6 + 7 * 2 * 200 * 6);
    let evaluations = 60;
    let started = Instant::now();
    for minute in 0..evaluations {
        black_box(alarms.evaluate(&store, (60 + minute) * 60_000));
    }
    let elapsed = started.elapsed();
    let evaluated = per_evaluation as f64 * evaluations as f64;
    println!(
        "evaluate:  21 alarms over 200 boxes, {evaluations} evaluations in {:.1} ms ({:.2} ms each): {} data points per core",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3 / evaluations as f64,
        rate(evaluated, elapsed)
    );
}

fn exposition_text(boxes: usize) -> String {
    let mut text = String::from("# TYPE http_requests_total counter\n");
    for b in 0..boxes {
        for code in ["200", "404", "500"] {
            let _ = writeln!(
                text,
                "http_requests_total{{box=\"b{b}\",code=\"{code}\",method=\"GET\"}} {}",
                b * 1000 + 7
            );
        }
    }
    text.push_str("# TYPE http_request_duration_seconds histogram\n");
    for b in 0..boxes {
        for le in ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "+Inf"] {
            let _ = writeln!(
                text,
                "http_request_duration_seconds_bucket{{box=\"b{b}\",le=\"{le}\"}} {}",
                b * 10
            );
        }
    }
    text
}

fn bench_exposition() {
    let text = exposition_text(1_000);
    let limits = ExpositionLimits { max_samples: 100_000, ..ExpositionLimits::default() };
    let rounds = 20;
    let started = Instant::now();
    let mut samples = 0;
    for _ in 0..rounds {
        samples += black_box(exposition::parse(&text, &limits).unwrap()).len();
    }
    let elapsed = started.elapsed();
    println!(
        "parse:     {samples} samples ({:.1} MB) in {:.1} ms: {} samples per core",
        (text.len() * rounds) as f64 / 1e6,
        elapsed.as_secs_f64() * 1e3,
        rate(samples as f64, elapsed)
    );
}

/// Serves `body()` on 127.0.0.1 for a bounded number of requests.
fn serve(requests: usize, body: impl Fn() -> String + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}/metrics", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let body = body();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

fn bench_breach_to_state_change() {
    let rounds = 50;
    let breaching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = {
        let breaching = breaching.clone();
        serve(rounds * 2, move || {
            let latency =
                if breaching.load(std::sync::atomic::Ordering::SeqCst) { 0.9 } else { 0.1 };
            let mut text = exposition_text(50);
            let _ = writeln!(text, "latency_seconds {latency}");
            text
        })
    };
    let definitions: BTreeMap<String, AlarmDefinition> = serde_saphyr::from_str(
        "slow:\n  metric: {metric: latency_seconds, statistic: Maximum, period: 10s, \
         evaluation_periods: 1, comparison: GreaterThanThreshold, threshold: 0.5}\n",
    )
    .unwrap();
    let scraper = Scraper::new(
        Client::default(),
        vec![ScrapeTarget { url, labels: Labels::new() }],
        ExpositionLimits::default(),
    )
    .unwrap();
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for round in 0..rounds as i64 {
        let mut store = Store::new(StoreLimits::default());
        let mut alarms = AlarmSet::new(&definitions, Labels::new()).unwrap();
        breaching.store(false, std::sync::atomic::Ordering::SeqCst);
        let base = round * 1_000_000;
        scraper.scrape_once(&mut store, base + 1_000);
        alarms.evaluate(&store, base + 10_000);
        breaching.store(true, std::sync::atomic::Ordering::SeqCst);
        // The breach is scraped at the period's last second; time from the scrape to the
        // transition.
        let started = Instant::now();
        scraper.scrape_once(&mut store, base + 19_000);
        let transitions = alarms.evaluate(&store, base + 20_000);
        let elapsed = started.elapsed();
        assert_eq!(transitions.len(), 1, "the alarm changes state once");
        total += elapsed;
        worst = worst.max(elapsed);
    }
    println!(
        "breach:    scrape (350 samples over local HTTP) + parse + store + evaluate to the transition: mean {:.2} ms, worst {:.2} ms over {rounds} rounds",
        total.as_secs_f64() * 1e3 / rounds as f64,
        worst.as_secs_f64() * 1e3
    );
    println!(
        "           plus the logical delay of period alignment: a breach is seen at the first \
         evaluation after its period closes, so up to one period + one cadence (10 s + 10 s \
         for a 10 s period; 60 s + 60 s for 1 min), as in CloudWatch"
    );
}

fn find_on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
}

/// The same series and equivalent rules as a promtool test file and a gantry alarm test file.
fn side_by_side_files(series: usize, hours: usize, rules: usize) -> (String, String, String) {
    let minutes = hours * 60;
    let values = |index: usize| {
        if index == 0 {
            // One box breaches from minute 60 on.
            format!("0.1x59 0.9x{}", minutes - 61)
        } else {
            format!("0.1x{}", minutes - 1)
        }
    };
    let mut prometheus_rules =
        String::from("groups:\n  - name: latency\n    interval: 1m\n    rules:\n");
    let mut gantry = String::from("evaluation_interval: 1m\nalarms:\n");
    for rule in 0..rules {
        let threshold = 0.5 + rule as f64 * 0.001;
        let _ = write!(
            prometheus_rules,
            "      - alert: latency_{rule}\n        expr: max(max_over_time(latency_seconds[1m])) > {threshold}\n        for: 2m\n"
        );
        let _ = write!(
            gantry,
            "  latency_{rule}:\n    metric: {{metric: latency_seconds, statistic: Maximum, period: 1m, evaluation_periods: 3, comparison: GreaterThanThreshold, threshold: {threshold}}}\n"
        );
    }
    let mut prometheus_test = String::from(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
    );
    gantry.push_str("tests:\n  - name: one box breaches\n    series:\n");
    for index in 0..series {
        let _ = write!(
            prometheus_test,
            "      - series: 'latency_seconds{{box=\"b{index}\"}}'\n        values: '{}'\n",
            values(index)
        );
        let _ = writeln!(
            gantry,
            "      - {{series: 'latency_seconds{{box=\"b{index}\"}}', values: '{}'}}",
            values(index)
        );
    }
    let at = minutes - 5;
    let _ = write!(
        prometheus_test,
        "    alert_rule_test:\n      - eval_time: {at}m\n        alertname: latency_0\n        exp_alerts:\n          - exp_labels: {{}}\n"
    );
    let _ =
        write!(gantry, "    expect:\n      - at: {at}m\n        states: {{latency_0: ALARM}}\n");
    (prometheus_rules, prometheus_test, gantry)
}

fn bench_side_by_side() {
    let (series, hours, rules) = (100, 6, 20);
    let (prometheus_rules, prometheus_test, gantry) = side_by_side_files(series, hours, rules);
    let started = Instant::now();
    let report = alarm_test::run(&gantry, "bench.yaml").unwrap();
    let gantry_elapsed = started.elapsed();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    let Some(promtool) = find_on_path("promtool") else {
        println!(
            "side by side: gantry {:.1} ms; promtool not on PATH, Prometheus side skipped",
            gantry_elapsed.as_secs_f64() * 1e3
        );
        return;
    };
    let directory = std::env::temp_dir().join(format!("gantry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::write(directory.join("rules.yml"), prometheus_rules).unwrap();
    std::fs::write(directory.join("test.yml"), prometheus_test).unwrap();
    std::fs::write(directory.join("empty.yml"), "rule_files: []\ntests: []\n").unwrap();
    let run = |file: &str| {
        let started = Instant::now();
        let output = std::process::Command::new(&promtool)
            .args(["test", "rules", file])
            .current_dir(&directory)
            .output()
            .unwrap();
        assert!(output.status.success(), "promtool: {}", String::from_utf8_lossy(&output.stdout));
        started.elapsed()
    };
    let startup = run("empty.yml");
    let prometheus_elapsed = run("test.yml");
    let _ = std::fs::remove_dir_all(&directory);
    let evaluating = prometheus_elapsed.saturating_sub(startup);
    println!(
        "side by side: {series} series x {hours} h at 1 min, {rules} equivalent rules evaluated every minute:\n\
         \x20          gantry alarm test {:.1} ms; promtool test rules {:.1} ms ({:.1} ms without its {:.1} ms start-up)\n\
         \x20          ratio promtool / gantry: {:.2} (start-up excluded)",
        gantry_elapsed.as_secs_f64() * 1e3,
        prometheus_elapsed.as_secs_f64() * 1e3,
        evaluating.as_secs_f64() * 1e3,
        startup.as_secs_f64() * 1e3,
        evaluating.as_secs_f64() / gantry_elapsed.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep it quick.
    bench_ingest_and_evaluate();
    bench_exposition();
    bench_breach_to_state_change();
    bench_side_by_side();
}
