//! The edge against a local HTTP server: scraping, pushing, canaries and the Prometheus API
//! source, each ending in the store where alarms read.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gantry_alarms::canary::{self, CanaryCheck};
use gantry_alarms::exposition::ExpositionLimits;
use gantry_alarms::fetch::{Client, MAX_BODY_BYTES};
use gantry_alarms::prometheus::{PrometheusQuery, PrometheusSource};
use gantry_alarms::push;
use gantry_alarms::scrape::{ScrapeTarget, Scraper};
use gantry_alarms::series::{Labels, SeriesKind, Store, StoreLimits, format_series};
use support::TestServer;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Every sample in the store, one `series time value` a line, sorted.
fn dump(store: &Store) -> String {
    let mut lines = Vec::new();
    for name in store.names() {
        for series in store.select(name, &Labels::new()) {
            for (time, value) in series.samples_between(i64::MIN, i64::MAX) {
                lines.push(format!("{} {time} {value}", format_series(name, &series.labels)));
            }
        }
    }
    lines.sort();
    lines.join("\n")
}

#[test]
fn scraping_stores_counters_as_increments_with_target_labels_and_up() {
    let requests = Arc::new(AtomicU64::new(100));
    let server = {
        let requests = requests.clone();
        TestServer::start(move |path| match path {
            "/metrics" => (
                200,
                format!(
                    "# TYPE requests_total counter\nrequests_total{{box=\"spoofed\",code=\"200\"}} {}\n\
                     # TYPE temperature gauge\ntemperature 21.5\n",
                    requests.load(Ordering::SeqCst)
                ),
            ),
            "/broken" => (200, "requests_total{code=\"200\" 5\n".to_string()),
            _ => (500, "oops".to_string()),
        })
    };
    let targets = [("/metrics", "b1"), ("/broken", "b2"), ("/missing", "b3")]
        .iter()
        .map(|(path, box_name)| ScrapeTarget {
            url: server.url(path),
            labels: labels(&[("box", box_name), ("region", "eu")]),
        })
        .collect();
    let scraper = Scraper::new(Client::default(), targets, ExpositionLimits::default()).unwrap();
    let mut store = Store::new(StoreLimits::default());
    let first = scraper.scrape_once(&mut store, 10_000);
    requests.store(130, Ordering::SeqCst);
    scraper.scrape_once(&mut store, 20_000);

    let errors: Vec<String> = first.iter().map(|outcome| format!("{:?}", outcome.error)).collect();
    assert_eq!(
        errors,
        [
            "None".to_string(),
            format!(
                "Some(\"scrape of {}: line 1, column 27: expected `,` or `}}` to close `{{` at column 15, found `5`\")",
                server.url("/broken")
            ),
            format!(
                "Some(\"scrape of {}: HTTP status 500, expected 200\")",
                server.url("/missing")
            ),
        ]
    );
    assert_eq!(
        dump(&store),
        "requests_total{box=\"b1\",code=\"200\",region=\"eu\"} 20000 30\n\
         temperature{box=\"b1\",region=\"eu\"} 10000 21.5\n\
         temperature{box=\"b1\",region=\"eu\"} 20000 21.5\n\
         up{box=\"b1\",region=\"eu\"} 10000 1\n\
         up{box=\"b1\",region=\"eu\"} 20000 1\n\
         up{box=\"b2\",region=\"eu\"} 10000 0\n\
         up{box=\"b2\",region=\"eu\"} 20000 0\n\
         up{box=\"b3\",region=\"eu\"} 10000 0\n\
         up{box=\"b3\",region=\"eu\"} 20000 0"
    );
}

/// A scrape the store refuses one sample of (a negative counter among good samples) is stored
/// not at all: the store holds what it held before, plus `up` 0 for the failed scrape, so a
/// `Sum` across label sets never counts half a scrape and the period reads as missing data.
#[test]
fn a_scrape_with_one_bad_sample_leaves_the_store_unchanged() {
    let round = Arc::new(AtomicU64::new(1));
    let server = {
        let round = round.clone();
        TestServer::start(move |_| {
            let bad = round.load(Ordering::SeqCst) == 2;
            let errors = if bad { "-1" } else { "0" };
            (
                200,
                format!(
                    "# TYPE requests counter\nrequests_total{{code=\"200\"}} {}\n\
                     requests_total{{code=\"500\"}} 7\n# TYPE errors counter\nerrors_total {errors}\n\
                     requests_total{{code=\"404\"}} 2\n",
                    100 * round.load(Ordering::SeqCst)
                ),
            )
        })
    };
    let target = ScrapeTarget { url: server.url("/metrics"), labels: labels(&[("box", "b1")]) };
    let scraper =
        Scraper::new(Client::default(), vec![target], ExpositionLimits::default()).unwrap();
    let mut store = Store::new(StoreLimits::default());
    scraper.scrape_once(&mut store, 10_000);
    let before = dump(&store);
    round.store(2, Ordering::SeqCst);
    let outcome = scraper.scrape_once(&mut store, 20_000).remove(0);
    assert_eq!(outcome.samples, 0);
    assert_eq!(
        outcome.error.as_deref(),
        Some(
            "counter errors_total{box=\"b1\"} reported -1; counters must be finite and not negative"
        )
    );
    assert_eq!(dump(&store), format!("{before}\nup{{box=\"b1\"}} 20000 0"));
    round.store(3, Ordering::SeqCst);
    scraper.scrape_once(&mut store, 30_000);
    assert!(dump(&store).contains("requests_total{box=\"b1\",code=\"200\"} 30000 200"));
}

#[test]
fn targets_with_the_same_labels_are_refused() {
    let target =
        |url: &str| ScrapeTarget { url: url.to_string(), labels: labels(&[("box", "b1")]) };
    let error = Scraper::new(
        Client::default(),
        vec![target("http://127.0.0.1:1/a"), target("http://127.0.0.1:1/b")],
        ExpositionLimits::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "scrape targets http://127.0.0.1:1/a and http://127.0.0.1:1/b have the same labels {\"box\": \"b1\"}; give each target labels of its own (box, instance)"
    );
}

#[test]
fn unreachable_and_slow_targets_fail_within_the_deadline() {
    let slow = TestServer::start(|_| {
        std::thread::sleep(Duration::from_millis(1500));
        (200, "x 1\n".to_string())
    });
    // A port nothing listens on: bind, learn the port, close.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/metrics", listener.local_addr().unwrap())
    };
    let client = Client::new(Duration::from_millis(300), MAX_BODY_BYTES);
    let targets = vec![
        ScrapeTarget { url: slow.url("/metrics"), labels: labels(&[("box", "slow")]) },
        ScrapeTarget { url: closed, labels: labels(&[("box", "closed")]) },
    ];
    let scraper = Scraper::new(client, targets, ExpositionLimits::default()).unwrap();
    let mut store = Store::new(StoreLimits::default());
    let started = std::time::Instant::now();
    let outcomes = scraper.scrape_once(&mut store, 1_000);
    assert!(started.elapsed() < Duration::from_millis(1400), "took {:?}", started.elapsed());
    for outcome in &outcomes {
        let error = outcome.error.as_deref().unwrap_or_default();
        assert!(error.starts_with(&format!("GET {}: ", outcome.url)), "{error}");
    }
    assert_eq!(dump(&store), "up{box=\"closed\"} 1000 0\nup{box=\"slow\"} 1000 0");
}

#[test]
fn pushed_samples_are_stored_like_scraped_ones() {
    let mut store = Store::new(StoreLimits::default());
    let limits = ExpositionLimits::default();
    let pushed = push::exposition(
        &mut store,
        "# TYPE jobs counter\njobs 3\n",
        &labels(&[("box", "b")]),
        &limits,
        1_000,
    );
    assert_eq!(pushed.unwrap(), 1);
    push::exposition(
        &mut store,
        "# TYPE jobs counter\njobs 5\n",
        &labels(&[("box", "b")]),
        &limits,
        2_000,
    )
    .unwrap();
    let refused =
        push::exposition(&mut store, "jobs{", &Labels::new(), &limits, 3_000).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "scrape of push: line 1, column 6: expected a label name or `}` to close `{` at column 5, found end of line"
    );
    assert_eq!(dump(&store), "jobs{box=\"b\"} 2000 2");
}

/// Probes `path` of a server with fixed answers and compares success, latency presence and
/// the failure reason with `expected`.
#[track_caller]
fn check_probe(server: &TestServer, path: &str, body_contains: Option<&str>, expected: &str) {
    let check = CanaryCheck {
        name: "create".to_string(),
        url: server.url(path),
        expect_status: 200,
        body_contains: body_contains.map(str::to_string),
        labels: labels(&[("region", "eu")]),
    };
    let result = canary::probe(&Client::new(Duration::from_millis(500), MAX_BODY_BYTES), &check);
    let actual = format!(
        "latency={} failure={}",
        result.latency_seconds.is_some(),
        result.failure.as_deref().unwrap_or("none")
    );
    assert_eq!(actual, expected);
}

#[test]
fn canaries_check_status_and_body() {
    let server = TestServer::start(|path| match path {
        "/health" => (200, "{\"status\":\"ok\"}".to_string()),
        "/slow" => {
            std::thread::sleep(Duration::from_millis(1500));
            (200, "late".to_string())
        }
        _ => (503, "unavailable".to_string()),
    });
    check_probe(&server, "/health", None, "latency=true failure=none");
    check_probe(&server, "/health", Some("\"ok\""), "latency=true failure=none");
    check_probe(
        &server,
        "/health",
        Some("healthy"),
        "latency=true failure=the body does not contain \"healthy\": \"{\\\"status\\\":\\\"ok\\\"}\"",
    );
    check_probe(
        &server,
        "/down",
        None,
        "latency=true failure=HTTP 503 (expected 200): \"unavailable\"",
    );
    let slow = format!("latency=false failure=GET {}: timeout: global", server.url("/slow"));
    check_probe(&server, "/slow", None, &slow);

    let checks = vec![
        CanaryCheck {
            name: "health".to_string(),
            url: server.url("/health"),
            expect_status: 200,
            body_contains: None,
            labels: labels(&[("region", "eu")]),
        },
        CanaryCheck {
            name: "down".to_string(),
            url: server.url("/down"),
            expect_status: 200,
            body_contains: None,
            labels: labels(&[("region", "eu")]),
        },
    ];
    let mut store = Store::new(StoreLimits::default());
    canary::Canary::new(Client::default(), checks).probe_all(&mut store, 5_000);
    let success: Vec<String> = store
        .select(canary::SUCCESS_METRIC, &Labels::new())
        .map(|series| {
            format!(
                "{} {:?}",
                series.labels["canary"],
                series.samples_between(0, i64::MAX).collect::<Vec<_>>()
            )
        })
        .collect();
    assert_eq!(success.len(), 2);
    assert!(success.contains(&"health [(5000, 1.0)]".to_string()), "{success:?}");
    assert!(success.contains(&"down [(5000, 0.0)]".to_string()), "{success:?}");
    assert_eq!(store.select(canary::LATENCY_METRIC, &Labels::new()).count(), 2);
}

#[test]
fn prometheus_api_results_are_stored_and_errors_explained() {
    let server = TestServer::start(|target| {
        if target.starts_with("/api/v1/query_range?") {
            (200, r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"requests_total","box":"b1"},"values":[[10,"100"],[20,"130"],[30,"135"]]}]}}"#.to_string())
        } else if target.contains("query=bad") {
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#
                    .to_string(),
            )
        } else if target.starts_with("/api/v1/query?") && target.contains("time=40.000") {
            (200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"requests_total","box":"b1"},"value":[40,"150"]}]}}"#.to_string())
        } else {
            (404, "not found".to_string())
        }
    });
    let query = PrometheusQuery {
        name: "requests_total".to_string(),
        promql: "requests_total{job=\"api\"}".to_string(),
        kind: SeriesKind::Counter,
    };
    let source = PrometheusSource::new(Client::default(), &server.address, vec![query]);
    let mut store = Store::new(StoreLimits::default());
    assert_eq!(source.backfill(&mut store, 10_000, 30_000, 10_000).unwrap(), 3);
    assert_eq!(source.collect(&mut store, 40_000).unwrap(), 1);
    // Collecting the same instant again stores nothing twice.
    assert_eq!(source.collect(&mut store, 40_000).unwrap(), 0);
    assert_eq!(
        dump(&store),
        "requests_total{box=\"b1\"} 20000 30\nrequests_total{box=\"b1\"} 30000 5\nrequests_total{box=\"b1\"} 40000 15"
    );
    let error = source.instant("bad", 0).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "Prometheus at {}: HTTP 400: bad_data error: parse error at char 4",
            server.address
        )
    );
    let error = source.range("x", 0, 20_000_000, 1_000).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "Prometheus at {}: a range query needs a positive step and at most 11000 points",
            server.address
        )
    );
}

#[test]
fn a_scrape_loop_with_a_long_interval_stops_promptly() {
    let server = TestServer::start(|_| (200, "x 1\n".to_string()));
    let target = ScrapeTarget { url: server.url("/metrics"), labels: labels(&[("box", "b")]) };
    let scraper =
        Scraper::new(Client::default(), vec![target], ExpositionLimits::default()).unwrap();
    let store = std::sync::Mutex::new(Store::new(StoreLimits::default()));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            scraper.run(
                &store,
                Duration::from_secs(60),
                &stop,
                || 1_000,
                |outcomes| {
                    assert_eq!(outcomes[0].error, None);
                    rounds.fetch_add(1, Ordering::SeqCst);
                },
            )
        });
        while rounds.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(rounds.load(Ordering::SeqCst), 1);
    assert_eq!(dump(&store.lock().unwrap()), "up{box=\"b\"} 1000 1\nx{box=\"b\"} 1000 1");
}
