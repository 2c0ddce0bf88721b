//! Blockers: the reasons a deployment may not *start* now, and the overrides that lift them.
//!
//! Each [`Blocker`] names its kind, the thing that blocks (an alarm, a commit, the window), a
//! reason a person can read, and when it will clear where that can be known (a window's next
//! opening, a hold's never). Blockers gate starts only; rollbacks and repairs are never blocked.
//! An [`Override`] lifts one kind of blocker for a scope (pipeline, optionally one stage and one
//! region) until its expiry. Unreviewed commits cannot be overridden: production runs only
//! reviewed code, like the capacity floor and signature checks nothing lifts. Nor can a step's
//! own firing rollback alarm: the deployment would only roll back at once.

use gantry_model::Target;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The kinds of blocker and a blocker as people read it: one type each, in `gantry-model`.
pub use gantry_model::views::{Blocker, BlockerKind};

/// A person's manual hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hold {
    /// `None` holds the whole pipeline.
    pub stage: Option<String>,
    pub by: String,
    pub reason: String,
    pub since: Timestamp,
}

/// A recorded override.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Override {
    /// The operator command's id.
    pub id: String,
    pub by: String,
    pub kind: BlockerKind,
    pub stage: Option<String>,
    pub region: Option<String>,
    pub reason: String,
    pub granted_at: Timestamp,
    pub expires_at: Timestamp,
    /// Whether its expiry has been reported.
    pub expiry_reported: bool,
}

impl Override {
    /// Whether this override lifts a `kind` blocker for `target` in `stage` at `now`.
    pub fn lifts(&self, kind: BlockerKind, stage: &str, target: &Target, now: Timestamp) -> bool {
        self.kind == kind
            && kind.overridable()
            && now < self.expires_at
            && self.stage.as_deref().is_none_or(|scope| scope == stage)
            && self.region.as_deref().is_none_or(|scope| scope == target.region)
    }
}
