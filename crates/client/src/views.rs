//! The API's answers as this client reads them: the very types the server serialises, from
//! `gantry_model::views` (one type each, so the two cannot drift apart), and the one answer whose
//! server shape is the controller's own box record, [`BoxDetail`]. Fields a newer server adds
//! are ignored, so an older client keeps working against a newer controller.

use gantry_model::agent::{BoxId, Report};
use gantry_model::{Target, Timestamp};
use serde::{Deserialize, Serialize};

pub use gantry_model::views::*;

/// `GET /api/v1/boxes/{box_id}`: the fields of the controller's box record this client reads.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BoxDetail {
    pub box_id: BoxId,
    pub service: String,
    pub target: Target,
    #[serde(default)]
    pub reported_at: Option<Timestamp>,
    /// The box's latest whole report.
    #[serde(default)]
    pub report: Option<Report>,
}
