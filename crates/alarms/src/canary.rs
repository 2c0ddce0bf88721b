//! Synthetic canaries: probe HTTP endpoints of each target on an interval, check the status and
//! body, and record success and latency as series that alarms watch.
//!
//! Each probe stores, at the probe's time and with labels `canary=<name>` plus the check's own
//! (region, zone, ...): `canary_success` (1 or 0) and, when a response arrived,
//! `canary_latency_seconds`. A probe that times out or fails to connect is a failure, never a
//! gap: a canary that cannot reach its target must alarm, not go quiet.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::fetch::Client;
use crate::scrape::every;
use crate::series::{Labels, SeriesKind, Store, TimestampMs};

/// 1 when the probe passed, 0 when it failed.
pub const SUCCESS_METRIC: &str = "canary_success";
/// Seconds from request to the end of the response body.
pub const LATENCY_METRIC: &str = "canary_latency_seconds";
/// How much of a failing body a failure reason quotes.
const QUOTED_BODY_CHARS: usize = 120;

/// One endpoint to probe and what a passing answer looks like.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryCheck {
    pub name: String,
    pub url: String,
    /// The status a passing answer has (usually 200).
    pub expect_status: u16,
    /// Text a passing body contains, if any.
    pub body_contains: Option<String>,
    /// Labels placing the probed target, e.g. region and zone.
    pub labels: Labels,
}

/// What one probe saw.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub name: String,
    pub latency_seconds: Option<f64>,
    /// Why the probe failed; `None` when it passed.
    pub failure: Option<String>,
}

/// Probes `check` once.
pub fn probe(client: &Client, check: &CanaryCheck) -> ProbeResult {
    let (latency_seconds, failure) = match client.get(&check.url, &[]) {
        Err(error) => (None, Some(error.to_string())),
        Ok(fetched) => {
            let latency = Some(fetched.elapsed.as_secs_f64());
            let quoted: String = fetched.body.chars().take(QUOTED_BODY_CHARS).collect();
            if fetched.status != check.expect_status {
                let expected = check.expect_status;
                (
                    latency,
                    Some(format!("HTTP {} (expected {expected}): {quoted:?}", fetched.status)),
                )
            } else if let Some(needle) = &check.body_contains
                && !fetched.body.contains(needle.as_str())
            {
                (latency, Some(format!("the body does not contain {needle:?}: {quoted:?}")))
            } else {
                (latency, None)
            }
        }
    };
    ProbeResult { name: check.name.clone(), latency_seconds, failure }
}

/// Stores a probe's result at `now`.
pub fn record(store: &mut Store, check: &CanaryCheck, result: &ProbeResult, now: TimestampMs) {
    let mut labels = check.labels.clone();
    labels.insert("canary".to_string(), check.name.clone());
    let success = if result.failure.is_none() { 1.0 } else { 0.0 };
    // The store refuses only beyond its series limit, which its own error reports elsewhere;
    // a canary result lost that way leaves a gap, which alarms treat as missing data.
    let _ = store.ingest(SUCCESS_METRIC, &labels, SeriesKind::Gauge, now, success);
    if let Some(latency) = result.latency_seconds {
        let _ = store.ingest(LATENCY_METRIC, &labels, SeriesKind::Gauge, now, latency);
    }
}

/// A set of checks probed together.
#[derive(Clone, Debug)]
pub struct Canary {
    client: Client,
    checks: Vec<CanaryCheck>,
}

impl Canary {
    pub fn new(client: Client, checks: Vec<CanaryCheck>) -> Canary {
        Canary { client, checks }
    }

    /// Probes every check once and stores the results at `now`.
    pub fn probe_all(&self, store: &mut Store, now: TimestampMs) -> Vec<ProbeResult> {
        self.checks
            .iter()
            .map(|check| {
                let result = probe(&self.client, check);
                record(store, check, &result, now);
                result
            })
            .collect()
    }

    /// Probes every `interval` (at least a second) until `stop` is set.
    pub fn run(
        &self,
        store: &Mutex<Store>,
        interval: Duration,
        stop: &AtomicBool,
        clock: impl Fn() -> TimestampMs,
        mut report: impl FnMut(Vec<ProbeResult>),
    ) {
        every(interval, stop, || {
            let results: Vec<ProbeResult> =
                self.checks.iter().map(|check| probe(&self.client, check)).collect();
            let now = clock();
            {
                let mut store = store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                for (check, result) in self.checks.iter().zip(&results) {
                    record(&mut store, check, result, now);
                }
            }
            report(results);
        });
    }
}
