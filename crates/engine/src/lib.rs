//! Gantry's deployment engine: a pure, deterministic state machine.
//!
//! [`Engine::step`] takes the state, the current time and one [`Input`], and returns the
//! [`Action`]s to perform and the records that changed; it never does I/O, never reads a clock
//! and never draws a random number, so the controller, the simulator and the tests drive the
//! same code and a recorded run replays exactly. The state ([`Engine`]) is split into records
//! ([`records`]): the round driver commits the changed ones before acting, and restarting is
//! [`Engine::from_records`] and stepping [`Input::ControllerStarted`] with a higher epoch.
//!
//! Module map:
//! - [`engine`]: the transition function: applying inputs, promotion, deployments, bakes,
//!   rollbacks, blockers and urgent mode;
//! - [`capacity`]: CodeDeploy's minimum-healthy-hosts arithmetic;
//! - [`windows`]: deployment windows in a region's time zone, and when they next open;
//! - [`fleet`]: the engine's view of boxes and the one rule for what counts as healthy capacity;
//! - [`blockers`]: blockers, holds and overrides; [`artifact`]: digests, commits, review status;
//! - [`input`] and [`action`]: the closed enums at the boundary; [`state`]: the serializable
//!   state; [`limits`]: every limit with its reason.
//!
//! Architecture invariant: nothing in this crate reads a clock, draws randomness or does I/O;
//! time comes in as `now`, everything else as an [`Input`].
//!
//! Architecture invariant: rollbacks and repairs are never blocked, and nothing (no override,
//! no urgent mode) lets a command take a target's healthy capacity below its floor.

pub mod action;
pub mod artifact;
pub mod blockers;
pub mod capacity;
pub mod engine;
pub mod fleet;
pub mod input;
pub mod limits;
pub mod records;
pub mod state;
pub mod views;
pub mod windows;

pub use action::{Action, BoxCommand, Event};
pub use artifact::{ArtifactReady, Commit, ContentBlocklist, Digest, Package};
pub use blockers::{Blocker, BlockerKind};
pub use engine::Outcome;
pub use fleet::{BoxId, BoxObservation, BoxReport, CommandId, CommandKind, CommandOutcome, Health};
pub use input::{AlarmState, Input, OperatorCommand};
pub use records::SCHEMA_VERSION;
pub use state::Engine;

/// Why a set of plans cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("pipeline {pipeline:?} appears twice")]
    DuplicatePipeline { pipeline: String },
    #[error(
        "pipeline {pipeline:?}, step {step:?}: targets {first} and {second} are in the same region; \
         a production step deploys at most one zone or cell per region"
    )]
    TwoTargetsInRegion { pipeline: String, step: String, first: String, second: String },
    #[error(
        "pipeline {pipeline:?}: region {region:?} has no known time zone; add it to the topology"
    )]
    UnknownRegion { pipeline: String, region: String },
    #[error("region {region:?}: time zone {zone:?} is unknown: {reason}")]
    UnknownTimeZone { region: String, zone: String, reason: String },
    #[error(
        "the stored records are of schema version {found}; this engine reads version {expected} \
         (migrate them with a matching release first)"
    )]
    SchemaVersion { found: u32, expected: u32 },
    #[error("stored record {key} cannot be read: {reason}")]
    CorruptRecord { key: String, reason: String },
}

/// Deliberate bugs the simulator plants to prove its invariant checks catch them. Only
/// `Engine::plant_bug`, compiled with the `planted-bugs` feature (a dev-dependency of the
/// simulator), can turn one on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Batches ignore the capacity floor.
    IgnoreCapacityFloor,
    /// Bakes complete as soon as they start, so the next zone of a region starts unbaked.
    SkipBake,
    /// A region's next zone starts as soon as its current one deployed, before the bake: two
    /// zones of one region are exposed at once.
    NextZoneBeforeBake,
    /// Accepted operator commands leave no audit record.
    UnauditedCommands,
    /// A restarted controller sends its outstanding commands again under new ids, so an agent
    /// may carry out the same change twice.
    ReissueOnRestart,
    /// Steps change target records without reporting them, so the store never learns of
    /// those writes and a restart loses them.
    UnreportedTargetWrite,
    /// A restarted controller reads a box it has not heard from since as running nothing and
    /// repairs it, though it may run the artifact it was commanded before the restart.
    RepairUnknownBoxes,
}
