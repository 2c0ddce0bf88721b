//! The topology: the one central list of regions, their availability zones and cells, and the
//! pre-production environments. Every pipeline reads it, so adding a region here adds it to every
//! pipeline's production waves.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
}

/// A pre-production environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// `alpha`, `beta`, `gamma` or `zeta`.
    pub name: String,
    /// The production regions this environment runs in (gamma usually in several).
    pub regions: Vec<String>,
}

impl Topology {
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|region| region.name == name)
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|environment| environment.name == name)
    }

    /// Total number of availability zones across all regions.
    pub fn zone_count(&self) -> usize {
        self.regions.iter().map(|region| region.zones.len()).sum()
    }
}
