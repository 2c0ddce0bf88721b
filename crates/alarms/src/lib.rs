//! Gantry's alarms: the signal that stops a hands-off deployment.
//!
//! This crate owns alarm evaluation with CloudWatch's semantics and names. Its evaluation is pure:
//! samples and the current time go in, alarm states (with reasons) come out; scraping and probing
//! live at the edge. Modules:
//!
//! - [`composite`]: CloudWatch's composite alarm rule language (`ALARM("a") OR ALARM("b")`).
//! - [`state`]: the three alarm states.

pub mod composite;
pub mod state;

pub use state::AlarmState;
