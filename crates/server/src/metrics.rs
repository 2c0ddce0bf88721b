//! The controller's own metrics, served at `/metrics` in the OpenMetrics text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub method: String,
    pub route: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    pub api_requests: Family<RouteLabels, Counter>,
    pub api_latency: Family<LatencyLabels, Histogram>,
    pub denied_requests: Counter,
    pub rounds: Counter,
    pub decisions: Counter,
    pub commands_issued: Counter,
    pub commands_delivered: Counter,
    pub rollbacks: Counter,
    pub store_commit_latency: Histogram,
    pub store_commit_failures: Counter,
    /// 1 while the last store commit succeeded, 0 after a failure (no commands are issued).
    pub store_healthy: Gauge,
    pub outbox_depth: Gauge,
    pub epoch: Gauge,
    pub agents: Gauge,
    pub audit_records: Gauge,
    pub scrapes: Counter,
    pub scrape_failures: Counter,
    pub alarm_evaluations: Counter,
    /// Builds that failed (and sources that could not be read), each reported once.
    pub build_failures: Counter,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~26 s: from a cached read to a long-poll that waited its full time.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gantry");
        let metrics = Metrics {
            api_requests: Family::default(),
            api_latency: Family::new_with_constructor(latency_histogram),
            denied_requests: Counter::default(),
            rounds: Counter::default(),
            decisions: Counter::default(),
            commands_issued: Counter::default(),
            commands_delivered: Counter::default(),
            rollbacks: Counter::default(),
            store_commit_latency: latency_histogram(),
            store_commit_failures: Counter::default(),
            store_healthy: Gauge::default(),
            outbox_depth: Gauge::default(),
            epoch: Gauge::default(),
            agents: Gauge::default(),
            audit_records: Gauge::default(),
            scrapes: Counter::default(),
            scrape_failures: Counter::default(),
            alarm_evaluations: Counter::default(),
            build_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "api_requests",
            "API requests by route and status",
            metrics.api_requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "API request latency by route",
            metrics.api_latency.clone(),
        );
        registry.register(
            "denied_requests",
            "Requests refused by authentication or roles",
            metrics.denied_requests.clone(),
        );
        registry.register("rounds", "Engine rounds committed", metrics.rounds.clone());
        registry.register(
            "decisions",
            "Engine decisions (events) recorded",
            metrics.decisions.clone(),
        );
        registry.register(
            "commands_issued",
            "Box commands committed to the outbox",
            metrics.commands_issued.clone(),
        );
        registry.register(
            "commands_delivered",
            "Box commands handed to an agent's long-poll",
            metrics.commands_delivered.clone(),
        );
        registry.register("rollbacks", "Rollback commands issued", metrics.rollbacks.clone());
        registry.register(
            "build_failures",
            "Builds that failed or sources that could not be read",
            metrics.build_failures.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Store commit latency",
            metrics.store_commit_latency.clone(),
        );
        registry.register(
            "store_commit_failures",
            "Store commits that failed",
            metrics.store_commit_failures.clone(),
        );
        registry.register(
            "store_healthy",
            "1 while the store accepts commits; 0 stops issuing commands",
            metrics.store_healthy.clone(),
        );
        registry.register(
            "outbox_depth",
            "Commands waiting for an agent",
            metrics.outbox_depth.clone(),
        );
        registry.register("epoch", "The controller's fencing epoch", metrics.epoch.clone());
        registry.register("agents", "Registered boxes", metrics.agents.clone());
        registry.register(
            "audit_records",
            "Records in the audit chain",
            metrics.audit_records.clone(),
        );
        registry.register("scrapes", "Box metrics endpoints scraped", metrics.scrapes.clone());
        registry.register(
            "scrape_failures",
            "Scrapes that failed (the box is up == 0 for them)",
            metrics.scrape_failures.clone(),
        );
        registry.register(
            "alarm_evaluations",
            "Evaluations of one pipeline's alarms in every scope",
            metrics.alarm_evaluations.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
