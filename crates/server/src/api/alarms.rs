//! Reading alarms: every pipeline's alarms the caller may read, with state, reason, scope and
//! recent values, and each box's last scrape (`GET /api/v1/alarms`); one pipeline's alarms
//! (`GET /api/v1/pipelines/{pipeline}/alarms`). What the alarm loop last published
//! ([`crate::alarms::Board`]); a bake's progress is in the pipeline's status.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::{ApiError, Caller, MAX_PAGE};
use crate::alarms::{AlarmView, ScrapeView};
use crate::auth::{Permission, Scope};
use crate::server::Controller;

/// `GET /api/v1/alarms`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct AlarmList {
    /// At most a page of alarms, by pipeline.
    pub alarms: Vec<AlarmView>,
    /// Pipelines whose alarm definitions could not be evaluated, and why.
    pub refused: Vec<RefusedAlarms>,
    /// Every box's latest scrape (at most a page).
    pub scrapes: Vec<ScrapeView>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct RefusedAlarms {
    pub pipeline: String,
    pub reason: String,
}

/// `GET /api/v1/pipelines/{pipeline}/alarms`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct PipelineAlarms {
    pub pipeline: String,
    pub alarms: Vec<AlarmView>,
    /// Why its alarm definitions could not be evaluated, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

pub async fn list(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
) -> axum::Json<AlarmList> {
    let published = controller.alarms.read();
    let may_read = |pipeline: &str| {
        let team = controller.team_of(pipeline).unwrap_or_default();
        caller.0.as_ref().is_some_and(|p| p.allows(Permission::Read, Scope::Team(&team)))
    };
    let alarms = published
        .alarms
        .iter()
        .filter(|(pipeline, _)| may_read(pipeline))
        .flat_map(|(_, alarms)| alarms.iter().cloned())
        .take(MAX_PAGE as usize)
        .collect();
    let refused = published
        .refused
        .iter()
        .filter(|(pipeline, _)| may_read(pipeline))
        .map(|(pipeline, reason)| RefusedAlarms {
            pipeline: pipeline.clone(),
            reason: reason.clone(),
        })
        .collect();
    let scrapes = published.scrapes.iter().take(MAX_PAGE as usize).cloned().collect();
    axum::Json(AlarmList { alarms, refused, scrapes })
}

pub async fn of_pipeline(
    State(controller): State<Arc<Controller>>,
    Path(pipeline): Path<String>,
) -> Result<axum::Json<PipelineAlarms>, ApiError> {
    let published = controller.alarms.read();
    let alarms = published.alarms.get(&pipeline);
    let refused = published.refused.get(&pipeline).cloned();
    if alarms.is_none() && refused.is_none() && controller.team_of(&pipeline).is_none() {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "path.pipeline",
            format!("no pipeline {pipeline:?} runs here"),
        ));
    }
    Ok(axum::Json(PipelineAlarms {
        pipeline,
        alarms: alarms.cloned().unwrap_or_default().into_iter().take(MAX_PAGE as usize).collect(),
        refused,
    }))
}
