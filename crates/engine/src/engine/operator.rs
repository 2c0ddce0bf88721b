//! Operator commands: approvals, holds, overrides, retries, urgent mode and the rollbacks a
//! person asks for (one target, one stage, everywhere).

use super::*;

/// Applies an operator command; `Ok` carries a one-line summary for the audit log.
pub(super) fn operate(
    pipeline: &mut Pipeline,
    now: Timestamp,
    id: &str,
    by: &str,
    command: OperatorCommand,
    events: &mut Vec<Event>,
) -> Result<String, String> {
    let stage_index = |plan: &Plan, stage: &str| {
        plan.stages
            .iter()
            .position(|s| s.name == stage)
            .ok_or_else(|| format!("no stage {stage:?}"))
    };
    match command {
        OperatorCommand::Approve { stage, artifact, .. } => {
            let index = stage_index(&pipeline.plan, &stage)?;
            let authors: BTreeSet<&str> = pipeline
                .artifacts
                .values()
                .find(|known| known.digest == artifact)
                .map(|known| known.authors().collect())
                .unwrap_or_default();
            if authors.contains(by) {
                return Err(format!("{by} wrote a commit in {artifact} and may not approve it"));
            }
            match &mut pipeline.stages[index].run {
                Some(run)
                    if run.artifact == artifact
                        && !matches!(run.phase, StagePhase::Failed { .. }) =>
                {
                    run.approved = true;
                    Ok(format!("approved {artifact} to leave {stage}"))
                }
                _ => Err(format!("{artifact} is not in stage {stage}")),
            }
        }
        OperatorCommand::Hold { stage, reason, .. } => {
            if let Some(stage) = &stage {
                stage_index(&pipeline.plan, stage)?;
            }
            if pipeline.holds.iter().any(|hold| hold.stage == stage) {
                return Err("already held".into());
            }
            let summary = format!("held {}: {reason}", stage.as_deref().unwrap_or("the pipeline"));
            pipeline.holds.push(Hold { stage, by: by.into(), reason, since: now });
            Ok(summary)
        }
        OperatorCommand::Release { stage, .. } => {
            let before = pipeline.holds.len();
            pipeline.holds.retain(|hold| hold.stage != stage);
            if pipeline.holds.len() == before {
                return Err("nothing to release".into());
            }
            Ok(format!("released {}", stage.as_deref().unwrap_or("the pipeline")))
        }
        OperatorCommand::Override { blocker, stage, region, reason, expires_at, .. } => {
            if !blocker.overridable() {
                return Err(format!("{blocker:?} blockers cannot be overridden"));
            }
            if reason.trim().is_empty() {
                return Err("an override needs a reason".into());
            }
            if expires_at <= now {
                return Err("the expiry is in the past".into());
            }
            if expires_at.duration_since(now) > seconds(MAX_OVERRIDE_SECONDS) {
                return Err(format!(
                    "an override lasts at most {} hours",
                    MAX_OVERRIDE_SECONDS / 3600
                ));
            }
            if let Some(stage) = &stage {
                stage_index(&pipeline.plan, stage)?;
            }
            let summary = format!(
                "override of {blocker:?} for {} / {} until {expires_at}: {reason}",
                stage.as_deref().unwrap_or("every stage"),
                region.as_deref().unwrap_or("every region")
            );
            pipeline.overrides.push(Override {
                id: id.into(),
                by: by.into(),
                kind: blocker,
                stage,
                region,
                reason,
                granted_at: now,
                expires_at,
                expiry_reported: false,
            });
            Ok(summary)
        }
        OperatorCommand::Retry { stage, .. } => {
            let index = stage_index(&pipeline.plan, &stage)?;
            let state = &mut pipeline.stages[index];
            let Some(run) = &mut state.run else {
                return Err(format!("nothing to retry in {stage}"));
            };
            if !matches!(run.phase, StagePhase::Failed { .. }) {
                return Err(format!("{stage} has not failed"));
            }
            if pipeline
                .artifacts
                .values()
                .any(|known| known.digest == run.artifact && !known.deployable())
            {
                return Err(format!(
                    "{} was rolled back everywhere; deploy a newer artifact",
                    run.artifact
                ));
            }
            run.phase = first_step(&pipeline.plan.stages[index]);
            run.approved = false;
            Ok(format!("retrying {} in {stage}", run.artifact))
        }
        OperatorCommand::RollBackTarget { target, reason, .. } => {
            roll_back_target(pipeline, now, &target, &reason, events)
        }
        OperatorCommand::RollBackStage { stage, reason, .. } => {
            let index = stage_index(&pipeline.plan, &stage)?;
            roll_back_stage(pipeline, now, index, &reason, events)
        }
        OperatorCommand::RollBackEverywhere { artifact, reason, .. } => {
            roll_back_everywhere(pipeline, now, &artifact, &reason, events)
        }
        OperatorCommand::Urgent { artifact, approvers, .. } => {
            let known = pipeline
                .artifacts
                .values()
                .find(|known| known.digest == artifact && known.deployable())
                .ok_or_else(|| {
                    format!("{artifact} is not a deployable artifact of this pipeline")
                })?;
            if let Some(urgent) = &pipeline.urgent {
                return Err(format!("urgent mode is already on for {}", urgent.artifact));
            }
            let policy = &pipeline.plan.urgent;
            let authors: BTreeSet<&str> = known.authors().collect();
            let counted: BTreeSet<&str> = approvers
                .iter()
                .map(String::as_str)
                .filter(|person| policy.approvers.iter().any(|senior| senior == person))
                .filter(|person| !authors.contains(person) && *person != by)
                .collect();
            let required = policy.required_approvals.max(1) as usize;
            if counted.len() < required {
                return Err(format!(
                    "urgent mode needs {required} approvals from {:?}, other than the change's authors and the requester; got {}",
                    policy.approvers,
                    counted.len()
                ));
            }
            let approvers: Vec<String> = counted.into_iter().map(String::from).collect();
            events.push(Event::UrgentStarted {
                pipeline: pipeline.plan.pipeline.clone(),
                artifact,
                approvers: approvers.clone(),
            });
            pipeline.urgent = Some(Urgent { artifact, approvers, since: now });
            Ok(format!("urgent mode for {artifact}: bake cut to {}%", policy.minimum_bake_percent))
        }
        OperatorCommand::EndUrgent { .. } => {
            let urgent = pipeline.urgent.take().ok_or("urgent mode is off")?;
            events.push(Event::UrgentEnded {
                pipeline: pipeline.plan.pipeline.clone(),
                artifact: urgent.artifact,
            });
            Ok(format!("urgent mode for {} ended", urgent.artifact))
        }
    }
}

/// Fails stage `index`'s run (it stops where it is; a newer artifact or a retry may enter).
fn fail_run(pipeline: &mut Pipeline, index: usize, reason: &str, events: &mut Vec<Event>) {
    let name = pipeline.plan.pipeline.clone();
    let stage = pipeline.plan.stages[index].name.clone();
    if let Some(run) = &mut pipeline.stages[index].run
        && !matches!(run.phase, StagePhase::Failed { .. })
    {
        halt_targets(&mut run.phase);
        run.phase = StagePhase::Failed { reason: reason.to_string() };
        events.push(Event::StageFailed {
            pipeline: name,
            stage,
            artifact: run.artifact,
            reason: reason.to_string(),
        });
    }
}

/// Starts rolling `target` back from `bad` to its newest other known-good artifact.
fn roll_back_from(
    pipeline: &mut Pipeline,
    now: Timestamp,
    target: &Target,
    bad: &Digest,
    reason: &str,
    events: &mut Vec<Event>,
) -> Result<Digest, String> {
    let name = pipeline.plan.pipeline.clone();
    let state = pipeline.targets.get_mut(target).ok_or_else(|| format!("no target {target}"))?;
    state.known_good.retain(|known| known != bad);
    let to = *state
        .known_good
        .last()
        .ok_or_else(|| format!("{target} has no known-good artifact other than {bad}"))?;
    events.push(Event::RollbackStarted {
        pipeline: name,
        target: target.clone(),
        to,
        reason: reason.to_string(),
    });
    state.rollback = Some(Rollback {
        to,
        reason: reason.to_string(),
        started_at: now,
        stalled_since: None,
        stuck: None,
    });
    Ok(to)
}

/// Rolls one target back: off the artifact a stage deploys there now (failing that stage), or
/// else off the artifact it runs.
fn roll_back_target(
    pipeline: &mut Pipeline,
    now: Timestamp,
    target: &Target,
    reason: &str,
    events: &mut Vec<Event>,
) -> Result<String, String> {
    let state = pipeline.targets.get(target).ok_or_else(|| format!("no target {target}"))?;
    let reason = format!("rolled back by hand: {reason}");
    let deploying = pipeline.stages.iter().enumerate().find_map(|(index, stage)| {
        let run = stage.run.as_ref()?;
        let StagePhase::Rollout { lanes } = &run.phase else { return None };
        lanes
            .values()
            .any(|lane| &lane.target == target && lane.active())
            .then_some((index, run.artifact))
    });
    let bad = match deploying {
        Some((_, artifact)) => artifact,
        None => *state
            .fleet
            .uniform_artifact()
            .or(state.known_good.last())
            .ok_or_else(|| format!("{target} runs no known artifact"))?,
    };
    let to = roll_back_from(pipeline, now, target, &bad, &reason, events)?;
    if let Some((index, _)) = deploying {
        fail_run(pipeline, index, &reason, events);
    }
    Ok(format!("rolling {target} back from {bad} to {to}"))
}

/// Rolls back every target of stage `index` that runs the stage's artifact.
fn roll_back_stage(
    pipeline: &mut Pipeline,
    now: Timestamp,
    index: usize,
    reason: &str,
    events: &mut Vec<Event>,
) -> Result<String, String> {
    let stage = pipeline.plan.stages[index].name.clone();
    let state = &pipeline.stages[index];
    let artifact = match &state.run {
        Some(run) if !matches!(run.phase, StagePhase::Failed { .. }) => Some(run.artifact),
        _ => state.passed.and_then(|sequence| pipeline.artifacts.get(&sequence)).map(|a| a.digest),
    }
    .ok_or_else(|| format!("{stage} runs no artifact to roll back"))?;
    let reason = format!("{stage} rolled back by hand: {reason}");
    let targets: BTreeSet<Target> = pipeline.plan.stages[index]
        .steps
        .iter()
        .flat_map(|step| step.targets.iter().cloned())
        .filter(|target| pipeline.targets[target].fleet.runs(&artifact))
        .collect();
    let mut moved = Vec::new();
    let mut stranded = Vec::new();
    for target in &targets {
        match roll_back_from(pipeline, now, target, &artifact, &reason, events) {
            Ok(_) => moved.push(target.to_string()),
            Err(why) => stranded.push(why),
        }
    }
    fail_run(pipeline, index, &reason, events);
    let mut summary = format!("rolling back {artifact} in {stage}: {} target(s)", moved.len());
    if !stranded.is_empty() {
        summary.push_str(&format!("; {}", stranded.join("; ")));
    }
    Ok(summary)
}

/// Recalls `artifact` and every later artifact of the pipeline, fails the stages running them,
/// and rolls every target that runs one of them back to its newest earlier known-good artifact.
pub(super) fn roll_back_everywhere(
    pipeline: &mut Pipeline,
    now: Timestamp,
    artifact: &Digest,
    reason: &str,
    events: &mut Vec<Event>,
) -> Result<String, String> {
    let bad = pipeline
        .artifacts
        .values()
        .find(|known| &known.digest == artifact)
        .map(|known| known.sequence)
        .ok_or_else(|| format!("{artifact} is not an artifact of this pipeline"))?;
    let mut recalled = BTreeSet::new();
    for known in pipeline.artifacts.values_mut().filter(|known| known.sequence >= bad) {
        known.recalled = true;
        recalled.insert(known.digest);
    }
    let name = pipeline.plan.pipeline.clone();
    let reason = format!("rolled back everywhere: {reason}");
    for (stage, state) in pipeline.plan.stages.iter().zip(&mut pipeline.stages) {
        if state.passed.is_some_and(|sequence| sequence >= bad) {
            state.passed = None;
        }
        if let Some(run) = &mut state.run
            && recalled.contains(&run.artifact)
            && !matches!(run.phase, StagePhase::Failed { .. })
        {
            halt_targets(&mut run.phase);
            run.phase = StagePhase::Failed { reason: reason.clone() };
            events.push(Event::StageFailed {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                artifact: run.artifact,
                reason: reason.clone(),
            });
        }
    }
    let sequence_of = |digest: &Digest| {
        pipeline
            .artifacts
            .values()
            .find(|known| &known.digest == digest)
            .map(|known| known.sequence)
    };
    let mut moved = 0;
    let mut stranded = Vec::new();
    let plan_targets: Vec<Target> = pipeline.targets.keys().cloned().collect();
    for target in plan_targets {
        let state = pipeline.targets.get_mut(&target).expect("listed above");
        let runs_recalled = state.fleet.runs_any(|digest| recalled.contains(digest));
        state.known_good.retain(|digest| !recalled.contains(digest));
        if !runs_recalled {
            continue;
        }
        // The newest known-good artifact older than the bad one; digests the pipeline never
        // built (adopted at start) count as older than all of its artifacts.
        let to = state
            .known_good
            .iter()
            .rev()
            .find(|digest| sequence_of(digest).is_none_or(|sequence| sequence < bad))
            .cloned();
        match to {
            Some(to) => {
                events.push(Event::RollbackStarted {
                    pipeline: name.clone(),
                    target: target.clone(),
                    to,
                    reason: reason.clone(),
                });
                state.rollback = Some(Rollback {
                    to,
                    reason: reason.clone(),
                    started_at: now,
                    stalled_since: None,
                    stuck: None,
                });
                moved += 1;
            }
            None => stranded.push(target.to_string()),
        }
    }
    if let Some(urgent) = &pipeline.urgent
        && recalled.contains(&urgent.artifact)
    {
        events.push(Event::UrgentEnded { pipeline: name.clone(), artifact: urgent.artifact });
        pipeline.urgent = None;
    }
    let mut summary = format!(
        "recalled {} artifact(s) from {artifact} on; rolling back {moved} target(s)",
        recalled.len()
    );
    if !stranded.is_empty() {
        summary.push_str(&format!("; no earlier known-good artifact for {}", stranded.join(", ")));
    }
    Ok(summary)
}
