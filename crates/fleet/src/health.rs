//! HTTP health checks in Elastic Load Balancing's shape, shared with the agent (which runs them
//! before it lets a box take traffic): see `gantry_agent::health`.

pub use gantry_agent::health::*;
