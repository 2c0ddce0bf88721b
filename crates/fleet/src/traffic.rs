//! BlockTraffic and AllowTraffic for the agent: deregister the box from its load balancer with a
//! drain before anything stops it, and register it again only once its own health check passes.

use std::time::{Duration, Instant};

use gantry_agent::lifecycle::Traffic;

use crate::balancer::{Backend, LoadBalancer};
use crate::health::{HealthProbe, wait_healthy};

/// The box behind its load balancer.
pub struct BalancedBox {
    pub balancer: Box<dyn LoadBalancer>,
    pub backend: Backend,
    pub probe: HealthProbe,
    /// How long in-flight requests get to finish before the box is stopped.
    pub drain: Duration,
}

impl Traffic for BalancedBox {
    fn block(&mut self, deadline: Instant) -> Result<(), String> {
        let drain = self.drain.min(deadline.saturating_duration_since(Instant::now()));
        self.balancer.deregister(&self.backend.name, drain).map_err(|e| e.to_string())
    }

    fn allow(&mut self, deadline: Instant, check: Option<&HealthProbe>) -> Result<(), String> {
        let host = self.backend.address.ip().to_string();
        let mut probe = check.unwrap_or(&self.probe).clone();
        if probe.port == 0 {
            probe.port = self.backend.address.port();
        }
        wait_healthy(&host, &probe, deadline)
            .map_err(|reason| format!("the box did not become healthy: {reason}"))?;
        self.balancer.register(&self.backend).map_err(|e| e.to_string())
    }
}
