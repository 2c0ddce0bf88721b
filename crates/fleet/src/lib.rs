//! Gantry's embedded fleet: what stands around boxes on one machine.
//!
//! - [`balancer`]: the [`balancer::LoadBalancer`] trait the agent drains and restores boxes
//!   through, and the event log's vocabulary; [`builtin`] is the embedded default (an HTTP
//!   balancer with health checks, per-box metrics and an event log), [`haproxy`] drives a real
//!   HAProxy through its runtime API.
//! - [`health`]: ELB-style HTTP health checks (path, port, interval, timeout, thresholds).
//! - [`traffic`]: the agent's BlockTraffic/AllowTraffic over a load balancer.
//! - [`sample`]: the sample service whose behaviour its configuration file sets.
//! - [`local`]: the local fleet — a balancer process per target and an agent process per box,
//!   for a slice of the topology — brought up, listed and taken down.
//! - [`demo`]: `gantry demo` — a controller, the whole demo fleet, traffic and a sample-service
//!   repository, and the story of a good change and a bad one, told as [`demo::Narrative`].
//!
//! Architecture invariant: a box takes traffic only while registered and passing its health
//! check, and the agent deregisters it (draining) before any of its hooks stop it.

pub mod balancer;
pub mod builtin;
pub mod demo;
pub mod haproxy;
pub mod health;
pub mod local;
pub mod sample;
pub mod traffic;

/// What can go wrong around the fleet, each saying what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("load balancer: {0}")]
    Balancer(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
}
