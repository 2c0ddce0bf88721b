//! The expanded pipeline: every stage and step, the targets each touches, its bake and alarms.
//!
//! A [`Plan`] is what `gantry plan` prints and what the engine runs. It is derived from a
//! [`PipelineSpec`](crate::PipelineSpec) and a [`Topology`](crate::Topology) by `gantry-spec`
//! and holds no references back to either.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pipeline::{
    AlarmBlockers, CodeReview, DeploymentStrategy, Limits, PreprodKind, Promotion, SourceKind,
    TestGate, TimeWindows, UrgentPolicy,
};
use crate::{Bake, Source};

/// One pipeline, expanded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub pipeline: String,
    pub team: String,
    pub service: String,
    pub kind: SourceKind,
    pub sources: Vec<Source>,
    pub build_command: String,
    pub build_network: bool,
    pub code_review: CodeReview,
    /// Stages in promotion order: pre-production first, then the production waves.
    pub stages: Vec<Stage>,
    pub alarm_blockers: AlarmBlockers,
    /// The pipeline's windows; `holidays.dates` already holds every day of its calendars.
    pub time_windows: TimeWindows,
    pub limits: Limits,
    pub urgent: UrgentPolicy,
}

/// A promotion point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// `alpha`, `beta`, `gamma`, `zeta`, or the wave's name.
    pub name: String,
    pub kind: StageKind,
    /// How an artifact that passed this stage moves to the next one.
    pub promotion: Promotion,
    /// Test gates run after the stage's last step.
    pub tests: Vec<NamedTestGate>,
    pub deployment: DeploymentStrategy,
    pub steps: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StageKind {
    Preprod {
        environment: PreprodKind,
    },
    /// Production wave `number` (1-based).
    Wave {
        number: u32,
    },
}

impl StageKind {
    pub fn is_production(self) -> bool {
        matches!(self, StageKind::Wave { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedTestGate {
    pub name: String,
    #[serde(flatten)]
    pub gate: TestGate,
}

/// One step of a stage: deployments to its targets in parallel, then a bake.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// E.g. `wave-1/one-box`, `wave-1/zone-2`, `gamma/environment`.
    pub name: String,
    pub kind: StepKind,
    /// What this step deploys to; within a production step, at most one per region.
    pub targets: Vec<Target>,
    /// Waited for after every target of the step finished deploying.
    pub bake: Bake,
    /// Alarms that roll the step's targets back when they go to ALARM.
    pub rollback_alarms: Vec<String>,
    /// For a one-box step: what its one box stands for, the scope whose requests it may take
    /// at most `one_box_percent` of (see [`one_box_share`]). `None` measures against the
    /// step's target alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_box_of: Option<OneBoxScope>,
}

/// What a one-box step's box stands for. The seed: the one box serves at most ten percent of
/// the requests of the Region *or* Availability Zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneBoxScope {
    /// Every box of the stage's targets in the step target's region.
    Region,
    /// The boxes of the step's target (one zone, cell or environment).
    Zone,
}

/// Why a one-box step may not take its box.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OneBoxShareError {
    #[error("the one-box share must be between 1 and 100 percent, not {percent}%")]
    PercentOutOfRange { percent: u32 },
    #[error("the {scope} has no boxes")]
    NoBoxes { scope: &'static str },
    #[error(
        "one box of {boxes} in its {scope} would take {share:.1}% of its traffic, more than one_box_percent {percent}%"
    )]
    TooLarge { boxes: u32, scope: &'static str, share: f64, percent: u32 },
}

/// Whether `percent` is a valid one-box share (what validation checks before any box exists).
pub fn check_one_box_percent(percent: u32) -> Result<(), OneBoxShareError> {
    if (1..=100).contains(&percent) {
        Ok(())
    } else {
        Err(OneBoxShareError::PercentOutOfRange { percent })
    }
}

/// The one rule for a one-box step's share, shared by validation, the ETA and the engine: one
/// box of the `boxes` in the scope it stands for takes `100 / boxes` percent of that scope's
/// requests, which may be at most `percent`.
pub fn one_box_share(boxes: u32, scope: OneBoxScope, percent: u32) -> Result<(), OneBoxShareError> {
    check_one_box_percent(percent)?;
    let scope = match scope {
        OneBoxScope::Region => "region",
        OneBoxScope::Zone => "zone",
    };
    if boxes == 0 {
        return Err(OneBoxShareError::NoBoxes { scope });
    }
    if u64::from(boxes) * u64::from(percent) < 100 {
        let share = 100.0 / f64::from(boxes);
        return Err(OneBoxShareError::TooLarge { boxes, scope, share, percent });
    }
    Ok(())
}

/// The fewest boxes a one-box step's scope needs for a share of at most `percent`.
pub fn fewest_boxes_for_one_box(percent: u32) -> u32 {
    100u32.div_ceil(percent.clamp(1, 100))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// One box per target, taking at most the strategy's one-box share of traffic.
    OneBox,
    /// The `n`-th zone (1-based) of each region in the wave.
    Zone(u32),
    /// The `n`-th cell (1-based) of each region in the wave.
    Cell(u32),
    /// A whole pre-production environment.
    Environment,
}

/// What one deployment acts on: the boxes of (environment, region, zone or cell).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Target {
    /// `prod`, or the pre-production environment's name.
    pub environment: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.environment, self.region)?;
        if let Some(zone) = &self.zone {
            write!(f, "/{zone}")?;
        }
        if let Some(cell) = &self.cell {
            write!(f, "/{cell}")?;
        }
        Ok(())
    }
}

impl Stage {
    /// The first step after `after` (or the stage's first step, for `None`) that deploys to
    /// `region`. Each region works through its own steps; regions of a stage run in parallel.
    pub fn next_step_in_region(&self, after: Option<usize>, region: &str) -> Option<usize> {
        let from = after.map_or(0, |index| index + 1);
        (from..self.steps.len())
            .find(|&index| self.steps[index].targets.iter().any(|t| t.region == region))
    }

    /// The step `index` deploys to in `region`, if any.
    pub fn target_in_region(&self, index: usize, region: &str) -> Option<&Target> {
        self.steps.get(index)?.targets.iter().find(|t| t.region == region)
    }

    /// The bake after step `index` in `region`: the step's own, except that a region's last
    /// step bakes as long as the stage's last step, so a region with fewer zones than the
    /// wave's largest still ends with the wave's bake.
    pub fn bake_in_region(&self, index: usize, region: &str) -> &Bake {
        let last = self.steps.len() - 1;
        if index < last && self.next_step_in_region(Some(index), region).is_none() {
            &self.steps[last].bake
        } else {
            &self.steps[index].bake
        }
    }

    /// Every region this stage deploys to, in order of first appearance.
    pub fn regions(&self) -> Vec<&str> {
        let mut regions: Vec<&str> = Vec::new();
        for target in self.steps.iter().flat_map(|step| &step.targets) {
            if !regions.contains(&target.region.as_str()) {
                regions.push(&target.region);
            }
        }
        regions
    }
}

impl Plan {
    pub fn production_stages(&self) -> impl Iterator<Item = &Stage> {
        self.stages.iter().filter(|stage| stage.kind.is_production())
    }
}
