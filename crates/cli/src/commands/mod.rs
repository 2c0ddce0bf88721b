//! One module per product area; each owns its arguments and its `run` functions.

pub mod agent;
pub mod alarm;
pub mod demo;
pub mod fleet;
pub mod operate;
pub mod pipelines;
pub mod server;
pub mod simulate;
pub mod supply;
pub mod watch;
