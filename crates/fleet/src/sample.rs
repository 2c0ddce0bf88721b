//! The sample service: a small HTTP service whose behaviour its configuration file sets, so a
//! "bad change" is a one-line edit of a file in the artifact.
//!
//! ```text
//! GET /          200 "ok VERSION", or 500 for `error_rate` of requests, after `added_latency_ms`
//! GET /health    200 once `slow_start_ms` has passed since start, 503 before
//! GET /metrics   sample_requests_total, sample_faults_total and the
//!                sample_request_duration_seconds histogram, in the Prometheus text format
//! ```
//!
//! Faults are spread evenly, not drawn at random: request n fails when ⌊(n+1)·rate⌋ > ⌊n·rate⌋,
//! so any run of requests fails the configured share, and a run is reproducible.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::Error;

/// The most latency a configuration may add: more than any health check's timeout would only
/// hang probes.
pub const MAX_ADDED_LATENCY_MS: u64 = 60_000;
/// The longest slow start a configuration may ask for.
pub const MAX_SLOW_START_MS: u64 = 600_000;
/// Latency buckets in seconds, from a fast loopback answer to a slow one.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The service's configuration file (YAML).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Shown in answers, so a reader sees which revision served.
    #[serde(default)]
    pub version: String,
    /// The share of requests to `/` answered 500, from 0 to 1.
    #[serde(default)]
    pub error_rate: f64,
    /// Added to every answer of `/`.
    #[serde(default)]
    pub added_latency_ms: u64,
    /// Exit at once with an error, as a broken build would.
    #[serde(default)]
    pub crash_on_start: bool,
    /// `/health` answers 503 for this long after start.
    #[serde(default)]
    pub slow_start_ms: u64,
}

impl SampleConfig {
    pub fn parse(text: &str, origin: &str) -> Result<SampleConfig, Error> {
        let config: SampleConfig = serde_saphyr::from_str(text).map_err(|e| {
            let message = e.to_string();
            Error::Config(format!("{origin}: {}", message.lines().next().unwrap_or(&message)))
        })?;
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&config.error_rate) {
            problems.push(format!("error_rate {} must be between 0 and 1", config.error_rate));
        }
        if config.added_latency_ms > MAX_ADDED_LATENCY_MS {
            problems.push(format!("added_latency_ms may be at most {MAX_ADDED_LATENCY_MS}"));
        }
        if config.slow_start_ms > MAX_SLOW_START_MS {
            problems.push(format!("slow_start_ms may be at most {MAX_SLOW_START_MS}"));
        }
        if !problems.is_empty() {
            return Err(Error::Config(format!("{origin}: {}", problems.join("; "))));
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<SampleConfig, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        SampleConfig::parse(&text, &path.display().to_string())
    }
}

/// Whether request `n` (from 0) is one of the faults at `rate`.
pub fn is_fault(n: u64, rate: f64) -> bool {
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

struct Service {
    config: SampleConfig,
    started: Instant,
    served: AtomicU64,
    requests: Counter,
    faults: Counter,
    latency: Histogram,
    registry: Registry,
}

/// Serves on `address` until the process ends. A configuration with `crash_on_start` returns
/// an error at once.
pub fn serve(config: SampleConfig, address: SocketAddr) -> Result<(), Error> {
    if config.crash_on_start {
        return Err(Error::Config("crash_on_start is set: the service exits at start".into()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Error::Io(format!("cannot listen on {address}: {e}")))?;
        axum::serve(listener, router(config)).await.map_err(|e| Error::Io(e.to_string()))
    })
}

/// The service's routes, for serving or testing in process.
pub fn router(config: SampleConfig) -> Router {
    let requests = Counter::default();
    let faults = Counter::default();
    let latency = Histogram::new(BUCKETS);
    let mut registry = Registry::default();
    registry.register("sample_requests", "Requests to /", requests.clone());
    registry.register("sample_faults", "Requests to / answered 500", faults.clone());
    registry.register(
        "sample_request_duration_seconds",
        "Time to answer a request to /",
        latency.clone(),
    );
    let service = Arc::new(Service {
        config,
        started: Instant::now(),
        served: AtomicU64::new(0),
        requests,
        faults,
        latency,
        registry,
    });
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(service)
}

async fn root(State(service): State<Arc<Service>>) -> (StatusCode, String) {
    let started = Instant::now();
    if service.config.added_latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(service.config.added_latency_ms)).await;
    }
    let n = service.served.fetch_add(1, Ordering::Relaxed);
    service.requests.inc();
    let answer = if is_fault(n, service.config.error_rate) {
        service.faults.inc();
        (StatusCode::INTERNAL_SERVER_ERROR, format!("fault {}\n", service.config.version))
    } else {
        (StatusCode::OK, format!("ok {}\n", service.config.version))
    };
    service.latency.observe(started.elapsed().as_secs_f64());
    answer
}

async fn health(State(service): State<Arc<Service>>) -> (StatusCode, &'static str) {
    if service.started.elapsed() < Duration::from_millis(service.config.slow_start_ms) {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    } else {
        (StatusCode::OK, "healthy\n")
    }
}

async fn metrics(State(service): State<Arc<Service>>) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &service.registry)
        .expect("writing to a String cannot fail");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_the_configured_share_of_any_run() {
        for (rate, runs, expected) in [(0.0, 100, 0), (0.1, 100, 10), (0.25, 8, 2), (1.0, 5, 5)] {
            let faults = (0..runs).filter(|n| is_fault(*n, rate)).count();
            assert_eq!(faults, expected, "rate {rate} over {runs}");
        }
    }

    #[test]
    fn configuration_is_checked() {
        let check = |text: &str, expected: Result<(), &str>| match (
            SampleConfig::parse(text, "service.yml"),
            expected,
        ) {
            (Ok(_), Ok(())) => {}
            (Err(error), Err(needle)) => {
                assert!(error.to_string().contains(needle), "{error}")
            }
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        };
        check("version: v1\nerror_rate: 0.05\nadded_latency_ms: 20\n", Ok(()));
        check("error_rate: 1.5\n", Err("error_rate 1.5 must be between 0 and 1"));
        check("error_rat: 0.1\n", Err("unknown field `error_rat`"));
        check("added_latency_ms: 999999\n", Err("added_latency_ms may be at most"));
    }
}
