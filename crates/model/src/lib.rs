//! Gantry's passive domain types, shared by every other crate: the [`Topology`], a pipeline
//! definition as written ([`PipelineSpec`]) and as expanded ([`Plan`]), [`Duration`], and the
//! words every crate shares as one type each: [`Digest`], [`AlarmState`] and [`Timestamp`].
//!
//! Nothing here does I/O or decides anything; loading and validating live in `gantry-spec`,
//! deciding lives in `gantry-engine`.

pub mod agent;
mod alarm;
mod digest;
mod duration;
pub mod pipeline;
pub mod plan;
pub mod topology;
pub mod views;

pub use alarm::AlarmState;
pub use digest::{Digest, DigestError};
pub use duration::{Duration, DurationError};
pub use pipeline::{Bake, PipelineSpec, Source};
pub use plan::{OneBoxScope, Plan, Stage, StageKind, Step, StepKind, Target};
pub use topology::Topology;

/// An instant, to the nanosecond, in UTC: the one timestamp type of every crate.
pub use jiff::Timestamp;
