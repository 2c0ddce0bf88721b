//! Gantry's alarms: the signal that stops a hands-off deployment.
//!
//! This crate owns alarm evaluation with CloudWatch's semantics and names. Its evaluation is pure:
//! samples and the current time go in, alarm states (with reasons) come out; scraping and probing
//! live at the edge. Modules:
//!
//! - [`exposition`]: the Prometheus text exposition format parser.
//! - [`scrape`]: the edge: scraping exposition endpoints and pushed samples into the store.
//! - [`prometheus`]: an external Prometheus server as a source (instant and range queries).
//! - [`canary`]: synthetic HTTP canaries recording success and latency series.
//! - [`fetch`]: bounded HTTP GETs shared by the edge.
//! - [`series`]: the metric store (labelled series, counters as increments, limits, retention).
//! - [`statistic`]: CloudWatch's statistics and Prometheus histogram quantiles.
//! - [`metric`]: metric alarms: M out of N data points, `TreatMissingData`.
//! - [`composite`]: CloudWatch's composite alarm rule language (`ALARM("a") OR ALARM("b")`).
//! - [`alarm_set`]: a scope's alarms evaluated together: states, reasons, history, cycle
//!   detection, and fail-closed gates.
//! - [`anomaly`]: anomaly detection on standard metrics (requests to zero, far above baseline).
//! - [`judge`]: a Mann–Whitney one-box-versus-fleet judge, after Kayenta's.
//! - [`bake`]: data points for bake: qualifying data points per metric and scope since a moment.
//! - [`alarm_test`]: alarm unit test files (`gantry alarm test FILE`).
//! - [`state`]: the three alarm states.

pub mod alarm_set;
pub mod alarm_test;
pub mod anomaly;
pub mod bake;
pub mod canary;
pub mod composite;
mod error;
pub mod exposition;
pub mod fetch;
pub mod judge;
pub mod metric;
pub mod prometheus;
pub mod scrape;
pub mod series;
pub mod state;
pub mod statistic;

pub use error::{DefinitionError, Error};
pub use state::AlarmState;
