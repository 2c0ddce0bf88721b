//! Gantry's passive domain types, shared by every other crate: the [`Topology`], a pipeline
//! definition as written ([`PipelineSpec`]) and as expanded ([`Plan`]), and [`Duration`].
//!
//! Nothing here does I/O or decides anything; loading and validating live in `gantry-spec`,
//! deciding lives in `gantry-engine`.

mod duration;
pub mod pipeline;
pub mod plan;
pub mod topology;

pub use duration::{Duration, DurationError};
pub use pipeline::{Bake, PipelineSpec, Source};
pub use plan::{Plan, Stage, StageKind, Step, StepKind, Target};
pub use topology::Topology;
