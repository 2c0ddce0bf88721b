//! HTTP health checks in Elastic Load Balancing's shape: GET a path on a port every `interval`,
//! each probe given `timeout`; `healthy_threshold` consecutive 2xx answers make a box healthy,
//! `unhealthy_threshold` consecutive failures make it unhealthy. The agent runs them before a
//! box takes traffic (besides ValidateService); load balancers run them on every box they hold.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// ELB's default probe timeout when a pipeline's health check names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// ELB's default count of consecutive failures before a box counts as unhealthy.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;

/// A health check, as the load balancer and the agent run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProbe {
    pub path: String,
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl HealthProbe {
    /// The probe of a pipeline's health check; the wire form carries no timeout or unhealthy
    /// threshold yet, so those take ELB's defaults.
    pub fn from_check(check: &gantry_model::agent::HealthCheck) -> HealthProbe {
        HealthProbe {
            path: check.path.clone(),
            port: check.port,
            interval: Duration::from_secs(check.interval.as_seconds().max(1)),
            timeout: DEFAULT_TIMEOUT,
            healthy_threshold: check.healthy_threshold.max(1),
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
        }
    }
}

/// Counts consecutive results into a health verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthCounter {
    pub healthy: bool,
    successes: u32,
    failures: u32,
}

impl HealthCounter {
    /// Takes one probe's result; returns the new verdict when it changed.
    pub fn record(&mut self, ok: bool, probe: &HealthProbe) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let verdict = if !self.healthy && self.successes >= probe.healthy_threshold {
            true
        } else if self.healthy && self.failures >= probe.unhealthy_threshold {
            false
        } else {
            return None;
        };
        self.healthy = verdict;
        Some(verdict)
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// One blocking probe of `http://host:port/path`: true on a 2xx answer within the timeout.
pub fn probe_once(host: &str, probe: &HealthProbe) -> bool {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(probe.timeout))
            .http_status_as_error(false)
            .build(),
    );
    let url = format!("http://{host}:{}{}", probe.port, probe.path);
    matches!(agent.get(&url).call(), Ok(response) if response.status().is_success())
}

/// Probes every `interval` until the box passes `healthy_threshold` probes in a row (`Ok`) or
/// `deadline` passes (`Err` saying why). A box that starts slowly fails its first probes; only
/// the deadline gives up on it.
pub fn wait_healthy(host: &str, probe: &HealthProbe, deadline: Instant) -> Result<(), String> {
    let mut counter = HealthCounter::default();
    let mut probes = 0u32;
    loop {
        let started = Instant::now();
        let ok = probe_once(host, probe);
        probes += 1;
        if counter.record(ok, probe) == Some(true) {
            return Ok(());
        }
        let next = started + probe.interval;
        if next >= deadline {
            return Err(format!(
                "http://{host}:{}{} did not pass {} probes in a row before the deadline ({probes} probes, the last {} failed)",
                probe.port,
                probe.path,
                probe.healthy_threshold,
                counter.failures()
            ));
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
