//! The load balancer boundary the agent drains and restores boxes through, whatever sits behind
//! it: the built-in balancer ([`crate::builtin`]) or HAProxy ([`crate::haproxy`]).

use std::net::SocketAddr;
use std::time::Duration;

use gantry_model::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Error;

/// A box as its load balancer knows it: a name and where it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
}

/// What a load balancer does for the agent.
pub trait LoadBalancer: Send {
    /// Adds the box; it takes traffic once the balancer's own health check passes.
    fn register(&mut self, backend: &Backend) -> Result<(), Error>;
    /// Stops sending the box new requests, waits up to `drain` for those in flight to finish,
    /// then removes it. Deregistering a box that is not registered does nothing.
    fn deregister(&mut self, name: &str, drain: Duration) -> Result<(), Error>;
    /// The registered boxes that pass the balancer's health check and take traffic.
    fn healthy(&mut self) -> Result<Vec<String>, Error>;
}

/// One change in a balancer's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Registered,
    /// Takes no new requests from now on.
    Deregistered,
    /// Passed its health check: takes traffic.
    Healthy,
    /// Failed its health check: takes none.
    Unhealthy,
}

/// An entry of the built-in balancer's event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub backend: String,
    pub kind: EventKind,
}

/// The boxes taking traffic after each event of `events`, in order: the evidence a capacity
/// floor is checked against.
pub fn healthy_over_time(events: &[Event]) -> Vec<(Timestamp, usize)> {
    let mut registered = std::collections::BTreeSet::new();
    let mut healthy = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        match event.kind {
            EventKind::Registered => {
                registered.insert(event.backend.clone());
            }
            EventKind::Deregistered => {
                registered.remove(&event.backend);
                healthy.remove(&event.backend);
            }
            EventKind::Healthy if registered.contains(&event.backend) => {
                healthy.insert(event.backend.clone());
            }
            EventKind::Healthy => {}
            EventKind::Unhealthy => {
                healthy.remove(&event.backend);
            }
        }
        out.push((event.at, healthy.len()));
    }
    out
}
