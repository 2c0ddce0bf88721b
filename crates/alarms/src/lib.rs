//! Gantry's alarms: the signal that stops a hands-off deployment.
//!
//! Metrics come in from Prometheus exposition endpoints, pushes, an external Prometheus server
//! and synthetic canaries; alarms with CloudWatch's semantics and names turn them into OK, ALARM
//! or INSUFFICIENT_DATA with a reason; gates and bake ask whether a change may move on.
//! A pipeline's `alarms.definitions` holds four kinds, all evaluated by [`alarm_set`]: `metric`
//! (a threshold), `composite` (a rule over other alarms), `anomaly` (a standard metric against
//! its own baseline) and `judge` (the one box's values against the fleet's, by a Mann–Whitney
//! test); any of them can roll a deployment back.
//!
//! The pure core (samples and the time in, states out; no I/O, no clock):
//!
//! - [`series`]: the metric store (labelled series, counters as increments, limits, retention).
//! - [`statistic`]: CloudWatch's statistics and Prometheus histogram quantiles.
//! - [`metric`]: metric alarms: M out of N data points, `TreatMissingData`, data gaps.
//! - [`composite`]: CloudWatch's composite alarm rule language (`ALARM("a") OR ALARM("b")`).
//! - [`alarm_set`]: a scope's alarms evaluated together: states, reasons, history, cycle
//!   detection, and fail-closed gates.
//! - [`regional`]: a pipeline's alarms per region and organisation-wide, read out as the
//!   engine's observations.
//! - [`bake`]: data points for bake: qualifying data points per metric and scope since a moment.
//! - [`anomaly`]: anomaly detection on standard metrics (requests to zero, far above baseline),
//!   and the `anomaly` alarm kind built on it.
//! - [`judge`]: a Mann–Whitney one-box-versus-fleet judge, after Kayenta's, and the `judge`
//!   alarm kind built on it.
//! - [`exposition`]: the Prometheus text exposition format parser.
//! - [`push`]: pushed expositions and samples into the store.
//! - `alarm_test`: alarm unit test files (`gantry alarm test FILE`; feature `test-files`).
//! - `import`: CloudWatch alarms from a CloudFormation template or `describe-alarms` output
//!   (`gantry alarm import FILE`; feature `import`).
//! - [`state`]: the three alarm states.
//!
//! The edge (network I/O; the time is still passed in; feature `edge`):
//!
//! - [`source`]: the metric source trait, with an in-memory replay source.
//! - `scrape`: scraping exposition endpoints into the store.
//! - `prometheus`: an external Prometheus server as a source (instant and range queries).
//! - `canary`: synthetic HTTP canaries recording success and latency series.
//! - `fetch`: bounded HTTP GETs shared by the edge.
//!
//! Architecture invariant: only the edge modules touch the network, and nothing in the crate
//! reads the wall clock (the edge times requests with a monotonic timer, for canary latency);
//! every evaluation is a function of the store and the `now` it is given.

pub mod alarm_set;
#[cfg(feature = "test-files")]
pub mod alarm_test;
pub mod anomaly;
pub mod bake;
#[cfg(feature = "edge")]
pub mod canary;
pub mod composite;
mod error;
pub mod exposition;
#[cfg(feature = "edge")]
pub mod fetch;
#[cfg(feature = "import")]
pub mod import;
pub mod judge;
pub mod metric;
#[cfg(feature = "edge")]
pub mod prometheus;
pub mod push;
pub mod regional;
#[cfg(feature = "edge")]
pub mod scrape;
pub mod series;
pub mod source;
pub mod state;
pub mod statistic;

pub use error::{DefinitionError, Error, FieldProblem};
pub use state::AlarmState;
