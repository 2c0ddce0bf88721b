//! The engine's decisions as a readable timeline, one line per event with its reason: what
//! `gantry simulate --scenario` prints and what scenario tests compare.

use std::collections::BTreeMap;

use gantry_engine::{Digest, Event};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Names for digests, so a timeline reads `api-1` rather than 64 hex digits: whoever made the
/// artifacts (the simulator, a scenario, the ETA) names them. Unnamed digests show their first
/// twelve hex digits.
#[derive(Clone, Debug, Default)]
pub struct Names {
    names: BTreeMap<Digest, String>,
}

impl Names {
    /// The digest of an artifact called `name` (the digest of the name's bytes), remembered
    /// under that name.
    pub fn artifact(&mut self, name: &str) -> Digest {
        let digest = Digest::of(name.as_bytes());
        self.names.insert(digest, name.to_string());
        digest
    }

    /// The digest named `name`, if one was.
    pub fn digest(&self, name: &str) -> Option<Digest> {
        let digest = Digest::of(name.as_bytes());
        self.names.contains_key(&digest).then_some(digest)
    }

    pub fn name(&self, digest: &Digest) -> String {
        self.names.get(digest).cloned().unwrap_or_else(|| digest.short())
    }

    /// `text` with every named `sha256:<hex>` written `sha256:<name>`.
    pub fn rename(&self, text: &str) -> String {
        if !text.contains("sha256:") {
            return text.to_string();
        }
        let mut out = text.to_string();
        for (digest, name) in &self.names {
            let full = digest.to_string();
            if out.contains(&full) {
                out = out.replace(&full, &format!("sha256:{name}"));
            }
        }
        out
    }
}

/// `2026-11-27 Fri 16:00:05 UTC`
pub fn when(at: Timestamp) -> String {
    at.to_zoned(TimeZone::UTC).strftime("%Y-%m-%d %a %H:%M:%S UTC").to_string()
}

/// One line for an event, or `None` for events too fine for a timeline.
pub fn describe(event: &Event, names: &Names) -> Option<String> {
    let short = |digest: &Digest| names.name(digest);
    let line = match event {
        Event::ArtifactAccepted { pipeline, artifact } => {
            format!("{pipeline}: accepted {}", short(artifact))
        }
        Event::ArtifactRefused { pipeline, artifact, reason } => {
            format!("{pipeline}: refused {}: {reason}", short(artifact))
        }
        Event::StageEntered { pipeline, stage, artifact } => {
            format!("{pipeline} {stage}: {} entered", short(artifact))
        }
        Event::Superseded { pipeline, stage, artifact, by } => {
            format!("{pipeline} {stage}: {} superseded by {}", short(artifact), short(by))
        }
        Event::Blocked { pipeline, stage, target, artifact, blockers } => {
            if blockers.is_empty() {
                format!("{pipeline} {stage} {target}: {} no longer blocked", short(artifact))
            } else {
                let reasons: Vec<String> = blockers
                    .iter()
                    .map(|blocker| match blocker.clears_at {
                        Some(at) => {
                            format!("{:?}: {} (clears {})", blocker.kind, blocker.reason, when(at))
                        }
                        None => format!("{:?}: {}", blocker.kind, blocker.reason),
                    })
                    .collect();
                format!(
                    "{pipeline} {stage} {target}: {} blocked: {}",
                    short(artifact),
                    reasons.join("; ")
                )
            }
        }
        Event::BlockerOverridden { pipeline, target, blocker, override_id } => {
            format!(
                "{pipeline} {target}: override {override_id} lifts {:?}: {}",
                blocker.kind, blocker.reason
            )
        }
        Event::OverrideExpired { pipeline, override_id } => {
            format!("{pipeline}: override {override_id} expired")
        }
        Event::DeploymentStarted { pipeline, step, target, artifact, .. } => {
            format!("{pipeline} {step} {target}: deploying {}", short(artifact))
        }
        Event::DeploymentSucceeded { pipeline, step, target, artifact, .. } => {
            format!("{pipeline} {step} {target}: deployed {}", short(artifact))
        }
        Event::DeploymentFailed { pipeline, step, target, artifact, reason, .. } => {
            format!("{pipeline} {step} {target}: deploying {} failed: {reason}", short(artifact))
        }
        Event::BakeStarted { pipeline, step, target, artifact, until, .. } => {
            format!("{pipeline} {step} {target}: baking {} until {}", short(artifact), when(*until))
        }
        Event::BakeWaitingForEvidence { pipeline, step, target, artifact, missing, .. } => {
            format!(
                "{pipeline} {step} {target}: bake of {} waits for evidence: {}",
                short(artifact),
                missing.join("; ")
            )
        }
        Event::StepBaked { pipeline, step, target, artifact, .. } => {
            format!("{pipeline} {step} {target}: {} baked", short(artifact))
        }
        Event::TestGateFinished { pipeline, stage, gate, artifact, passed, detail } => {
            let verdict = if *passed { "passed" } else { "failed" };
            format!("{pipeline} {stage}: test {gate} {verdict} for {}: {detail}", short(artifact))
        }
        Event::AwaitingApproval { pipeline, stage, artifact } => {
            format!("{pipeline} {stage}: {} awaits approval", short(artifact))
        }
        Event::StagePassed { pipeline, stage, artifact } => {
            format!("{pipeline} {stage}: {} passed", short(artifact))
        }
        Event::StageFailed { pipeline, stage, artifact, reason } => {
            format!("{pipeline} {stage}: {} failed: {reason}", short(artifact))
        }
        Event::RollbackStarted { pipeline, target, to, reason } => {
            format!("{pipeline} {target}: rolling back to {}: {reason}", short(to))
        }
        Event::RollbackFinished { pipeline, target, to } => {
            format!("{pipeline} {target}: rolled back to {}", short(to))
        }
        Event::KnownGoodAdopted { .. } => return None,
        Event::UrgentStarted { pipeline, artifact, approvers } => {
            format!(
                "{pipeline}: urgent mode for {} approved by {}",
                short(artifact),
                approvers.join(", ")
            )
        }
        Event::UrgentEnded { pipeline, artifact } => {
            format!("{pipeline}: urgent mode for {} ended", short(artifact))
        }
        Event::RollbackStuck { pipeline, target, reason, .. } => {
            format!("{pipeline} {target}: rollback stuck: {reason}")
        }
        Event::DeploymentStuck { pipeline, step, target, reason, .. } => {
            format!("{pipeline} {step} {target}: stuck: {reason}")
        }
        Event::PlanVersionStarted { pipeline, version } => {
            format!("{pipeline}: plan version {version} in effect")
        }
        Event::CommandAccepted { id, by, summary } => format!("{by} ({id}): {summary}"),
        Event::CommandRejected { id, by, reason } => format!("{by} ({id}) refused: {reason}"),
    };
    Some(names.rename(&line))
}
