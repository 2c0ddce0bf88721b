//! Carrying out one deployment command: verify, then stage, then run the lifecycle — in that
//! order, so nothing of an artifact is unpacked, installed or run before it has passed every
//! check against the box's own trust root.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_model::Digest;
use gantry_supply::store::StoredArtifact;

use crate::Error;
use crate::health::HealthProbe;
use crate::hooks::HookEnvironment;
use crate::lifecycle::{self, Deployment, EventRecord, PipelineDirectory, Report, Traffic};
use crate::verify::{Artifact, TrustRoot};

/// What to deploy, as the controller commanded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployRequest {
    /// The command's id: CodeDeploy's `DEPLOYMENT_ID` for the hooks.
    pub deployment_id: String,
    pub pipeline: String,
    pub digest: Digest,
    /// The target's name and stable id: `DEPLOYMENT_GROUP_NAME` and `DEPLOYMENT_GROUP_ID`.
    pub target_name: String,
    pub target_id: String,
    /// The pipeline's `hook_timeout`, for the whole lifecycle.
    pub hook_timeout: Duration,
    /// The pipeline's health check, and how long the box may take to pass it.
    pub health_check: Option<HealthProbe>,
    pub health_check_timeout: Duration,
}

/// Files kept beside a staged bundle so a kept revision can be verified again without a
/// download.
const ATTESTATION_FILE: &str = "attestation.json";
const MANIFEST_FILE: &str = "manifest.json";
const PACKAGE_FILE: &str = "package.tar.zst";

/// The artifact of a revision this box keeps, if it has it: a rollback to it needs no download.
pub fn kept_artifact(directory: &PipelineDirectory, digest: &Digest) -> Option<Artifact> {
    let revision = directory.revision(digest);
    Some(Artifact {
        package: std::fs::read(revision.join(PACKAGE_FILE)).ok()?,
        attestation: std::fs::read(revision.join(ATTESTATION_FILE)).ok()?,
        manifest: std::fs::read(revision.join(MANIFEST_FILE)).ok()?,
    })
}

/// The revisions this box keeps for the pipeline, as verified artifacts: the next artifact's
/// commit range starts at the one before it, which the box ran (and so verified) itself.
pub fn kept_history(directory: &PipelineDirectory) -> Result<Vec<StoredArtifact>, Error> {
    let mut history = Vec::new();
    for digest in directory.record()?.revisions {
        let revision = directory.revision(&digest);
        let (Ok(manifest_bytes), Ok(envelope)) = (
            std::fs::read(revision.join(MANIFEST_FILE)),
            std::fs::read(revision.join(ATTESTATION_FILE)),
        ) else {
            continue;
        };
        let (Ok(manifest), Ok(envelope)) =
            (serde_json::from_slice(&manifest_bytes), serde_json::from_slice(&envelope))
        else {
            continue;
        };
        history.push(StoredArtifact {
            digest,
            manifest,
            manifest_bytes,
            envelope,
            package_path: revision.join(PACKAGE_FILE),
        });
    }
    Ok(history)
}

/// Verifies `artifact`, stages it and runs its lifecycle.
pub fn deploy(
    agent_root: &std::path::Path,
    trust: &TrustRoot,
    request: &DeployRequest,
    artifact: &Artifact,
    traffic: Option<&mut dyn Traffic>,
    observe: &mut dyn FnMut(&EventRecord),
) -> Result<Report, Error> {
    let none = BTreeMap::new();
    deploy_with_variables(agent_root, trust, request, artifact, &none, traffic, observe)
}

/// [`deploy`], adding `box_variables` to every hook's environment.
pub fn deploy_with_variables(
    agent_root: &std::path::Path,
    trust: &TrustRoot,
    request: &DeployRequest,
    artifact: &Artifact,
    box_variables: &BTreeMap<String, String>,
    traffic: Option<&mut dyn Traffic>,
    observe: &mut dyn FnMut(&EventRecord),
) -> Result<Report, Error> {
    let directory = PipelineDirectory::open(agent_root, &request.pipeline)?;
    let history = kept_history(&directory)?;
    let service =
        trust.verify_with_history(&request.digest, &request.pipeline, artifact, &history)?;
    directory.stage(&request.digest, &artifact.package)?;
    let revision = directory.revision(&request.digest);
    for (name, bytes) in
        [(ATTESTATION_FILE, &artifact.attestation), (MANIFEST_FILE, &artifact.manifest)]
    {
        crate::write_atomically(&revision.join(name), bytes)?;
    }
    let deployment = Deployment {
        environment: HookEnvironment {
            application_name: service,
            deployment_id: request.deployment_id.clone(),
            deployment_group_name: request.target_name.clone(),
            deployment_group_id: request.target_id.clone(),
            box_variables: box_variables.clone(),
        },
        pipeline: request.pipeline.clone(),
        digest: request.digest,
        lifecycle_timeout: request.hook_timeout,
        ignore_application_stop_failures: false,
        health_check: request.health_check.clone(),
        health_check_timeout: request.health_check_timeout,
    };
    lifecycle::run(&directory, &deployment, traffic, observe)
}
