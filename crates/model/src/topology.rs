//! The topology: the one central list of regions, their availability zones and cells, and the
//! pre-production environments. Every pipeline reads it, so adding a region here adds it to every
//! pipeline's production waves.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::plan::{OneBoxScope, Stage, Step, Target};

/// The whole topology file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Production regions. Their order in the file does not matter: waves select by traffic.
    pub regions: Vec<Region>,
    /// Pre-production environments (alpha, beta, gamma, zeta) and the regions each runs in.
    #[serde(default)]
    pub environments: Vec<Environment>,
}

/// One production region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// The region's name, e.g. `us-east-1`.
    pub name: String,
    /// Relative traffic size (e.g. peak requests per second). Waves pick the lowest- and
    /// highest-traffic regions by this number.
    pub traffic: u64,
    /// IANA time zone, e.g. `America/New_York`. Deployment windows are evaluated in it.
    pub time_zone: String,
    /// Availability zones, in the order they are deployed.
    pub zones: Vec<Zone>,
    /// Boxes behind each production target of this region (a zone, or a cell of a zone that has
    /// cells), unless the zone says otherwise. Leave it out where it is not known; settings
    /// that depend on it (the one-box share) are then checked against the smallest fleet that
    /// can satisfy them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<u32>,
}

/// One availability zone of a region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The zone's name, e.g. `use1-az1`. Unique across the topology.
    pub name: String,
    /// Cells (internal shards) in this zone, if the service is cellular.
    #[serde(default)]
    pub cells: Vec<String>,
    /// Boxes behind each target in this zone: the zone itself, or each of its cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<u32>,
}

/// A pre-production environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// `alpha`, `beta`, `gamma` or `zeta`.
    pub name: String,
    /// The production regions this environment runs in (gamma usually in several).
    pub regions: Vec<String>,
    /// Boxes behind each of this environment's targets (one per region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<u32>,
}

impl Topology {
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|region| region.name == name)
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|environment| environment.name == name)
    }

    /// The boxes behind `target`, if the topology says: the zone's count, else its region's
    /// (production), or the environment's (pre-production). A consumer that needs a number
    /// where the topology gives none (the ETA's ideal fleet) picks its own, enough for the
    /// one-box share ([`fewest_boxes_for_one_box`](crate::plan::fewest_boxes_for_one_box)).
    pub fn boxes_per_target(&self, target: &Target) -> Option<u32> {
        let Some(environment) = self.environment(&target.environment) else {
            let region = self.region(&target.region)?;
            let zone = target
                .zone
                .as_deref()
                .and_then(|name| region.zones.iter().find(|zone| zone.name == name));
            return zone.and_then(|zone| zone.boxes).or(region.boxes);
        };
        environment.boxes
    }

    /// The boxes a one-box step's box stands for, and that scope, by the topology: with
    /// [`OneBoxScope::Region`], the boxes of every target of `stage` in `target`'s region;
    /// otherwise `target`'s own. `None` when the topology does not give every count needed.
    /// Validation checks the one-box share against it
    /// ([`one_box_share`](crate::plan::one_box_share)); the ETA sizes its ideal fleet from it.
    pub fn one_box_scope_boxes(
        &self,
        stage: &Stage,
        step: &Step,
        target: &Target,
    ) -> Option<(u32, OneBoxScope)> {
        match step.one_box_of {
            Some(OneBoxScope::Region) => {
                let mut targets: Vec<&Target> = stage
                    .steps
                    .iter()
                    .flat_map(|step| &step.targets)
                    .filter(|other| {
                        other.region == target.region
                            && other.zone.is_some() == target.zone.is_some()
                    })
                    .collect();
                targets.sort();
                targets.dedup();
                let mut boxes = 0u32;
                for target in targets {
                    boxes = boxes.saturating_add(self.boxes_per_target(target)?);
                }
                Some((boxes, OneBoxScope::Region))
            }
            Some(OneBoxScope::Zone) | None => {
                Some((self.boxes_per_target(target)?, OneBoxScope::Zone))
            }
        }
    }

    /// Total number of availability zones across all regions.
    pub fn zone_count(&self) -> usize {
        self.regions.iter().map(|region| region.zones.len()).sum()
    }
}
