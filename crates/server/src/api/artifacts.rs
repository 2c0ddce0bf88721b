//! Artifacts over the API: what agents download (the package, its attestation and manifest, by
//! digest, only of their own service), the signed lists they verify with (the trust list and
//! the published block list), and what people read — each artifact with its provenance and
//! verdict, and the build loop's status.
//!
//! Everything here is read from the supply home the controller builds with
//! ([`crate::builds`]); a controller without one has no artifacts (404) and no lists (503).

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gantry_model::Digest;
use gantry_supply::home::Home;
use gantry_supply::store::StoredArtifact;
use serde::Serialize;

use super::{ApiError, Caller};
use crate::auth::{Permission, Principal, Scope};
use crate::server::Controller;

/// The largest signed list served (trust list, block list): ten thousand blocks or keys fit in
/// a few megabytes; past this the file is not one the controller wrote.
pub const MAX_LIST_BYTES: u64 = 16 * 1024 * 1024;

/// The most artifacts one pipeline's list answers, newest first: the engine keeps fewer.
pub const MAX_ARTIFACTS_LISTED: usize = 100;

fn home(controller: &Controller) -> Result<Home, ApiError> {
    controller.builds.home().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this controller builds nothing (no supply home: start it with --supply-home or \
             $GANTRY_HOME)",
        )
    })
}

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    let digest: Digest = text.parse().map_err(|_| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "path.digest",
            format!("{text:?} is not a digest; write sha256:<64 hex digits>"),
        )
    })?;
    if !text.starts_with("sha256:") {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "path.digest",
            format!("{text:?}: write the digest in full, sha256:<64 hex digits>"),
        ));
    }
    Ok(digest)
}

fn not_found(digest: &Digest) -> ApiError {
    ApiError::field(StatusCode::NOT_FOUND, "path.digest", format!("no artifact {digest} here"))
}

/// The stored artifact `text` names, on a blocking thread.
async fn stored(
    controller: &Arc<Controller>,
    text: &str,
) -> Result<(Home, StoredArtifact), ApiError> {
    let digest = parse_digest(text)?;
    let Some(home) = controller.builds.home() else { return Err(not_found(&digest)) };
    let found = {
        let home = home.clone();
        tokio::task::spawn_blocking(move || home.store().get(&digest.to_string()))
            .await
            .map_err(ApiError::internal)?
    };
    match found {
        Ok(stored) => Ok((home, stored)),
        Err(gantry_supply::Error::Io { cause, .. })
            if cause.kind() == std::io::ErrorKind::NotFound =>
        {
            Err(not_found(&digest))
        }
        Err(gantry_supply::Error::NotFound { .. }) => Err(not_found(&digest)),
        Err(error) => Err(ApiError::internal(error)),
    }
}

/// An agent may fetch only its own service's artifacts; another's is as good as absent.
fn own_service(caller: &Caller, stored: &StoredArtifact) -> Result<(), ApiError> {
    match &caller.0 {
        Some(Principal::Agent { service, .. }) if *service == stored.manifest.service => Ok(()),
        Some(Principal::Agent { .. }) => Err(not_found(&stored.digest)),
        _ => Err(ApiError::internal("an agent route ran without an agent token")),
    }
}

fn bytes(content_type: &'static str, body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /api/v1/agent/artifacts/{digest}`: the package.
pub async fn agent_package(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let (home, stored) = stored(&controller, &digest).await?;
    own_service(&caller, &stored)?;
    let digest = stored.digest;
    let package = tokio::task::spawn_blocking(move || home.store().read_package(&digest))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(bytes("application/octet-stream", package))
}

/// `GET /api/v1/agent/artifacts/{digest}/attestation`: the DSSE envelope.
pub async fn agent_attestation(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let (home, stored) = stored(&controller, &digest).await?;
    own_service(&caller, &stored)?;
    let digest = stored.digest;
    let envelope = tokio::task::spawn_blocking(move || home.store().read_attestation(&digest))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(bytes("application/json", envelope))
}

/// `GET /api/v1/agent/artifacts/{digest}/manifest`: the manifest exactly as stored.
pub async fn agent_manifest(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let (_, stored) = stored(&controller, &digest).await?;
    own_service(&caller, &stored)?;
    Ok(bytes("application/json", stored.manifest_bytes))
}

/// Reads a signed list's envelope (`<path>.dsse`), bounded.
async fn signed_list(path: std::path::PathBuf, what: &str) -> Result<Response, ApiError> {
    let signed = gantry_supply::keys::signed_path(&path);
    let read = tokio::task::spawn_blocking(move || {
        let size = std::fs::metadata(&signed)?.len();
        if size > MAX_LIST_BYTES {
            return Err(std::io::Error::other(format!(
                "{}: {size} bytes, more than {MAX_LIST_BYTES}",
                signed.display()
            )));
        }
        std::fs::read(&signed)
    })
    .await
    .map_err(ApiError::internal)?;
    match read {
        Ok(envelope) => Ok(bytes("application/json", envelope)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the controller has no signed {what} yet; try again shortly"),
        )),
        Err(error) => Err(ApiError::internal(error)),
    }
}

/// `GET /api/v1/agent/trust-list`: the build keys' trust list, as signed by the trust root.
pub async fn agent_trust_list(
    State(controller): State<Arc<Controller>>,
) -> Result<Response, ApiError> {
    let home = home(&controller)?;
    signed_list(home.keys().trusted_keys_path(), "trust list").await
}

/// `GET /api/v1/agent/block-list`: the published content block list, as signed by the trust
/// root and republished by the build loop.
pub async fn agent_block_list(
    State(controller): State<Arc<Controller>>,
) -> Result<Response, ApiError> {
    let home = home(&controller)?;
    signed_list(home.published_blocks_path(), "block list").await
}

/// One commit an artifact brings, with who wrote and who reviewed it.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct CommitView {
    pub id: String,
    pub subject: String,
    /// `Name <email>` of the author and every co-author.
    pub authors: Vec<String>,
    /// How the author was established: an SSH signature by a keyring key, a verified forge
    /// pull request, or not at all.
    pub authorship: String,
    /// Team members whose review, signed with their own key (or imported from a verified forge
    /// delivery), covers this commit. Approvals of a stage given through the API are not
    /// reviews: they are operator commands, audited as `api:<name>`.
    pub signed_reviews: Vec<String>,
}

/// One artifact with its provenance and its verdict.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ArtifactDetail {
    pub digest: Digest,
    pub pipeline: String,
    pub service: String,
    pub repository: String,
    pub branch: String,
    pub commit: String,
    /// The commit its range starts after (its base's, or the trusted base), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// The artifact it was built after, when its range started at one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_artifact: Option<Digest>,
    pub commits: Vec<CommitView>,
    /// The builder identity it earned (who ran it, in which sandbox).
    pub builder_id: String,
    pub builder_host: String,
    /// The key id of the build key that signed its provenance.
    pub signed_by: String,
    pub built_at: gantry_model::Timestamp,
    /// What keeps it from deploying now, as the supply chain sees it (content blocks,
    /// unreviewed commits), each with why.
    pub blockers: Vec<String>,
    /// The engine's position for it and whether it may deploy (not refused, not recalled);
    /// absent when the engine has not taken it (yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    pub deployable: bool,
}

/// `GET /api/v1/pipelines/{pipeline}/artifacts`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ArtifactList {
    pub artifacts: Vec<ArtifactDetail>,
}

fn detail(controller: &Controller, home: &Home, stored: &StoredArtifact) -> ArtifactDetail {
    let manifest = &stored.manifest;
    let engine = controller
        .pipeline_view(&manifest.pipeline)
        .and_then(|view| view.artifacts.into_iter().find(|a| a.digest == stored.digest));
    let review_required = controller
        .builds
        .spec(&manifest.pipeline)
        .is_some_and(|spec| spec.code_review == gantry_model::pipeline::CodeReview::Required);
    let reviews = if review_required { home.reviews().ok() } else { None };
    let blockers = gantry_supply::operations::artifact_blockers(home, manifest, reviews.as_ref())
        .map(|blockers| blockers.iter().map(|b| b.why()).collect())
        .unwrap_or_else(|error| vec![format!("the blockers could not be read: {error}")]);
    ArtifactDetail {
        digest: stored.digest,
        pipeline: manifest.pipeline.clone(),
        service: manifest.service.clone(),
        repository: manifest.source.repository.clone(),
        branch: manifest.source.branch.clone(),
        commit: manifest.source.commit.clone(),
        baseline: manifest.source.baseline.clone(),
        base_artifact: manifest.source.base_artifact,
        commits: manifest
            .commits
            .iter()
            .map(|record| CommitView {
                id: record.commit.id.clone(),
                subject: record.commit.subject.clone(),
                authors: record.commit.authors().map(ToString::to_string).collect(),
                authorship: record.authorship.describe(),
                signed_reviews: record.reviewers.clone(),
            })
            .collect(),
        builder_id: manifest.builder.id.clone(),
        builder_host: manifest.builder.host.clone(),
        signed_by: stored.envelope.signatures.first().map(|s| s.keyid.clone()).unwrap_or_default(),
        built_at: manifest.finished_at,
        deployable: engine.as_ref().is_some_and(|a| a.deployable) && blockers.is_empty(),
        sequence: engine.map(|a| a.sequence),
        blockers,
    }
}

fn may_read(caller: &Caller, controller: &Controller, pipeline: &str) -> bool {
    let team = controller.team_of(pipeline).unwrap_or_default();
    caller.0.as_ref().is_some_and(|p| p.allows(Permission::Read, Scope::Team(&team)))
}

/// `GET /api/v1/artifacts/{digest}`.
pub async fn get_artifact(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(digest): Path<String>,
) -> Result<axum::Json<ArtifactDetail>, ApiError> {
    let (home, stored) = stored(&controller, &digest).await?;
    if !may_read(&caller, &controller, &stored.manifest.pipeline) {
        return Err(not_found(&stored.digest));
    }
    let controller = controller.clone();
    let detail = tokio::task::spawn_blocking(move || detail(&controller, &home, &stored))
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(detail))
}

/// `GET /api/v1/pipelines/{pipeline}/artifacts`: newest first, at most
/// [`MAX_ARTIFACTS_LISTED`].
pub async fn list_artifacts(
    State(controller): State<Arc<Controller>>,
    Path(pipeline): Path<String>,
) -> Result<axum::Json<ArtifactList>, ApiError> {
    if controller.team_of(&pipeline).is_none() {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "path.pipeline",
            format!("no pipeline {pipeline:?} runs here"),
        ));
    }
    let Some(home) = controller.builds.home() else {
        return Ok(axum::Json(ArtifactList { artifacts: Vec::new() }));
    };
    let controller = controller.clone();
    let artifacts = tokio::task::spawn_blocking(move || {
        let stored = home.store().list()?;
        Ok::<_, gantry_supply::Error>(
            stored
                .iter()
                .rev()
                .filter(|s| s.manifest.pipeline == pipeline)
                .take(MAX_ARTIFACTS_LISTED)
                .map(|s| detail(&controller, &home, s))
                .collect(),
        )
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(axum::Json(ArtifactList { artifacts }))
}

/// `GET /api/v1/builds`.
pub async fn list_builds(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
) -> axum::Json<crate::builds::BuildsView> {
    let mut view = controller.builds.view();
    view.pipelines.retain(|pipeline, _| may_read(&caller, &controller, pipeline));
    axum::Json(view)
}
