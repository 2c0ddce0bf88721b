//! Stages and their gates: entering a stage, failing it (and the rollbacks that follow), test
//! gates, manual approval, passing it on to the next stage, urgent mode ending.

use super::*;

pub(super) fn trigger_rollbacks(pipeline: &mut Pipeline, context: &mut Context) {
    for index in 0..pipeline.stages.len() {
        let stage = &pipeline.plan.stages[index];
        let Some(StageRun { phase: StagePhase::Rollout { lanes }, artifact, .. }) =
            &pipeline.stages[index].run
        else {
            continue;
        };
        let mut failing = Vec::new();
        for (region, lane) in lanes.iter().filter(|(_, lane)| lane.active()) {
            let step = &stage.steps[lane.step];
            let firing = rollback_alarms(&pipeline.plan, stage, step)
                .find(|alarm| context.firing(alarm, region));
            let Some(alarm) = firing else { continue };
            let reason = format!("rollback alarm {alarm} is in ALARM in {region}");
            // The region's earlier targets of this stage run the artifact too: they go back
            // with the one deploying now.
            let earlier = stage.steps[..lane.step]
                .iter()
                .filter_map(|step| step.targets.iter().find(|t| &t.region == region))
                .filter(|target| *target != &lane.target)
                .filter(|target| pipeline.targets[*target].fleet.runs(artifact));
            let mut targets: Vec<&Target> = earlier.collect();
            targets.dedup();
            targets.push(&lane.target);
            for target in targets {
                failing.push((target.clone(), reason.clone()));
            }
        }
        if !failing.is_empty() {
            fail_stage(pipeline, index, failing, context);
        }
    }
}

/// Marks a stage failed: rolls the failing targets back (when auto-rollback is on), halts the
/// rest of the step, and stops the artifact's promotion.
pub(super) fn fail_stage(
    pipeline: &mut Pipeline,
    index: usize,
    failing: Vec<(Target, String)>,
    context: &mut Context,
) {
    let name = pipeline.plan.pipeline.clone();
    let stage = &pipeline.plan.stages[index];
    let auto_rollback = stage.deployment.auto_rollback;
    let run = pipeline.stages[index].run.as_mut().expect("failing a running stage");
    let mut reasons = Vec::new();
    for (target, reason) in failing {
        reasons.push(format!("{target}: {reason}"));
        if !auto_rollback {
            continue;
        }
        let state = pipeline.targets.get_mut(&target).expect("plan target");
        // A target that baked the artifact earlier in the stage no longer counts it as good.
        state.known_good.retain(|known| known != &run.artifact);
        match state.known_good.last() {
            Some(to) if state.rollback.as_ref().is_none_or(|r| &r.to != to) => {
                context.notify(Event::RollbackStarted {
                    pipeline: name.clone(),
                    target: target.clone(),
                    to: *to,
                    reason: reason.clone(),
                });
                state.rollback = Some(Rollback {
                    to: *to,
                    reason,
                    started_at: context.now,
                    stalled_since: None,
                    stuck: None,
                });
            }
            Some(_) => {}
            None => reasons.push(format!("{target}: no known-good artifact to roll back to")),
        }
    }
    halt_targets(&mut run.phase);
    let reason = reasons.join("; ");
    context.notify(Event::StageFailed {
        pipeline: name.clone(),
        stage: stage.name.clone(),
        artifact: run.artifact,
        reason: reason.clone(),
    });
    if pipeline.urgent.as_ref().is_some_and(|urgent| urgent.artifact == run.artifact) {
        let urgent = pipeline.urgent.take().expect("checked");
        context.notify(Event::UrgentEnded { pipeline: name, artifact: urgent.artifact });
    }
    run.phase = StagePhase::Failed { reason };
}

/// The artifacts deploying or baking in production stages now.
pub(super) fn artifacts_in_production(pipeline: &Pipeline) -> BTreeSet<&Digest> {
    pipeline
        .plan
        .stages
        .iter()
        .zip(&pipeline.stages)
        .filter(|(stage, _)| stage.kind.is_production())
        .filter_map(|(_, state)| state.run.as_ref())
        .filter(|run| run.phase.started())
        .map(|run| &run.artifact)
        .collect()
}

pub(super) fn advance_stage(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let Some(run) = &pipeline.stages[index].run else { return };
    match &run.phase {
        StagePhase::Rollout { .. } => advance_rollout(pipeline, index, context),
        StagePhase::Testing { .. } => advance_tests(pipeline, index, context),
        StagePhase::AwaitingApproval => {
            let automatic = pipeline.plan.stages[index].promotion == Promotion::Automatic;
            if automatic || run.approved {
                pass_stage(pipeline, index, context);
            }
        }
        StagePhase::Failed { .. } => {}
    }
}

pub(super) fn advance_rollout(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let Some(run) = &pipeline.stages[index].run else { return };
    let StagePhase::Rollout { lanes } = &run.phase else { return };
    if !pipeline.artifacts.contains_key(&run.sequence) {
        let run = pipeline.stages[index].run.as_mut().expect("checked");
        run.phase = StagePhase::Failed { reason: "artifact forgotten".into() };
        return;
    }
    let regions: Vec<String> = lanes.keys().cloned().collect();
    let mut failing = Vec::new();
    for region in &regions {
        // A lane that baked a step starts its next one in the same pass.
        while advance_lane(pipeline, index, region, &mut failing, context) {}
        if !failing.is_empty() {
            fail_stage(pipeline, index, failing, context);
            return;
        }
    }
    let Some(StageRun { phase: StagePhase::Rollout { lanes }, .. }) = &pipeline.stages[index].run
    else {
        return;
    };
    if lanes.values().all(|lane| matches!(lane.phase, TargetPhase::Baked { .. })) {
        start_tests(pipeline, index, context);
    }
}

pub(super) fn start_tests(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let stage = &pipeline.plan.stages[index];
    let run = pipeline.stages[index].run.as_mut().expect("testing a running stage");
    let mut gates = Vec::new();
    for gate in &stage.tests {
        gates.push(GateRun {
            gate: gate.name.clone(),
            command: context.command_id(),
            deadline: context.now + model_seconds(gate.gate.timeout),
            passed: None,
            last_sent: None,
        });
    }
    run.phase = StagePhase::Testing { gates };
    advance_tests(pipeline, index, context);
}

pub(super) fn advance_tests(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    let stage = &pipeline.plan.stages[index];
    let run = pipeline.stages[index].run.as_mut().expect("testing a running stage");
    let StagePhase::Testing { gates } = &mut run.phase else { return };
    for gate in gates.iter_mut() {
        if gate.passed.is_none() && now >= gate.deadline {
            gate.passed = Some(false);
            context.notify(Event::TestGateFinished {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                gate: gate.gate.clone(),
                artifact: run.artifact,
                passed: false,
                detail: "timed out (fail closed)".into(),
            });
        }
        if gate.passed.is_none()
            && gate.last_sent.is_none_or(|sent| now >= sent + seconds(RESEND_INTERVAL))
        {
            gate.last_sent = Some(now);
            context.actions.push(Action::RunTestGate {
                id: gate.command,
                epoch: context.epoch,
                pipeline: name.clone(),
                stage: stage.name.clone(),
                gate: gate.gate.clone(),
                artifact: run.artifact,
            });
        }
        if gate.passed.is_none() {
            context.wake_at(gate.deadline);
            context.wake_at(gate.last_sent.expect("set above") + seconds(RESEND_INTERVAL));
        }
    }
    if let Some(gate) = gates.iter().find(|gate| gate.passed == Some(false)) {
        let reason = format!("test gate {} failed", gate.gate);
        context.notify(Event::StageFailed {
            pipeline: name,
            stage: stage.name.clone(),
            artifact: run.artifact,
            reason: reason.clone(),
        });
        run.phase = StagePhase::Failed { reason };
        return;
    }
    if gates.iter().all(|gate| gate.passed == Some(true)) {
        if stage.promotion == Promotion::Manual && !run.approved {
            run.phase = StagePhase::AwaitingApproval;
            context.notify(Event::AwaitingApproval {
                pipeline: name,
                stage: stage.name.clone(),
                artifact: run.artifact,
            });
        } else {
            pass_stage(pipeline, index, context);
        }
    }
}

pub(super) fn pass_stage(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let name = pipeline.plan.pipeline.clone();
    let run = pipeline.stages[index].run.take().expect("passing a running stage");
    let stage_name = pipeline.plan.stages[index].name.clone();
    if let (Some(older), Some(next)) =
        (pipeline.stages[index].passed, pipeline.plan.stages.get(index + 1))
        && pipeline.stages[index + 1].last_entered.is_none_or(|entered| entered < older)
        && let Some(older) = pipeline.artifacts.get(&older)
    {
        context.notify(Event::Superseded {
            pipeline: name.clone(),
            stage: next.name.clone(),
            artifact: older.digest,
            by: run.artifact,
        });
    }
    pipeline.stages[index].passed = Some(run.sequence);
    context.notify(Event::StagePassed {
        pipeline: name,
        stage: stage_name,
        artifact: run.artifact,
    });
}

pub(super) fn enter_stage(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let name = pipeline.plan.pipeline.clone();
    let candidate = if index == 0 {
        pipeline
            .artifacts
            .values()
            .rev()
            .find(|known| known.deployable())
            .map(|known| known.sequence)
    } else {
        pipeline.stages[index - 1].passed
    };
    let Some(candidate) = candidate else { return };
    if pipeline.stages[index].last_entered.is_some_and(|entered| entered >= candidate) {
        return;
    }
    let Some(artifact) =
        pipeline.artifacts.get(&candidate).filter(|known| known.deployable()).cloned()
    else {
        return;
    };
    let stage = &pipeline.plan.stages[index];
    let state = &mut pipeline.stages[index];
    match &state.run {
        None => {}
        Some(run) if matches!(run.phase, StagePhase::Failed { .. }) => {}
        Some(run) if !run.phase.started() && run.sequence < candidate => {
            context.notify(Event::Superseded {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                artifact: run.artifact,
                by: artifact.digest,
            });
        }
        Some(_) => return,
    }
    if index == 0 {
        let skipped = pipeline.artifacts.range(state.last_entered.map_or(0, |e| e + 1)..candidate);
        for (_, older) in skipped.filter(|(_, older)| older.deployable()) {
            context.notify(Event::Superseded {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                artifact: older.digest,
                by: artifact.digest,
            });
        }
    }
    state.last_entered = Some(candidate);
    state.run = Some(StageRun {
        sequence: candidate,
        artifact: artifact.digest,
        entered_at: context.now,
        approved: false,
        phase: first_step(stage),
    });
    context.notify(Event::StageEntered {
        pipeline: name,
        stage: stage.name.clone(),
        artifact: artifact.digest,
    });
    advance_rollout(pipeline, index, context);
}

/// A stage's rollout before it starts: every region at its first step.
pub(super) fn first_step(stage: &Stage) -> StagePhase {
    let lanes = stage
        .regions()
        .into_iter()
        .filter_map(|region| {
            let step = stage.next_step_in_region(None, region)?;
            let target = stage.target_in_region(step, region)?.clone();
            Some((region.to_string(), Lane::at(step, target)))
        })
        .collect();
    StagePhase::Rollout { lanes }
}

pub(super) fn halt_targets(phase: &mut StagePhase) {
    if let StagePhase::Rollout { lanes } = phase {
        for lane in lanes.values_mut() {
            if matches!(lane.phase, TargetPhase::Deploying { .. } | TargetPhase::Waiting) {
                lane.phase = TargetPhase::Halted;
            }
        }
    }
}

/// Urgent mode ends when its artifact has passed the last stage, or when it is in flight
/// nowhere any more (superseded before it started, or waiting for no stage), so a change that
/// will never move cannot hold every other change back.
pub(super) fn end_urgent_when_done(pipeline: &mut Pipeline, context: &mut Context) {
    let Some(urgent) = &pipeline.urgent else { return };
    let Some(sequence) = pipeline
        .artifacts
        .values()
        .find(|artifact| artifact.digest == urgent.artifact)
        .map(|a| a.sequence)
    else {
        return;
    };
    let last = pipeline.stages.len() - 1;
    let through = pipeline.stages[last].passed == Some(sequence);
    let running = pipeline.stages.iter().any(|state| {
        state.run.as_ref().is_some_and(|run| {
            run.sequence == sequence && !matches!(run.phase, StagePhase::Failed { .. })
        })
    });
    // Passed a stage and still the next stage's candidate, or not yet taken by the first stage.
    let waiting = pipeline.stages.iter().enumerate().any(|(index, state)| {
        index < last
            && state.passed == Some(sequence)
            && pipeline.stages[index + 1].last_entered.is_none_or(|entered| entered < sequence)
    }) || pipeline.stages[0].last_entered.is_none_or(|entered| entered < sequence);
    if through || !(running || waiting) {
        context.notify(Event::UrgentEnded {
            pipeline: pipeline.plan.pipeline.clone(),
            artifact: urgent.artifact,
        });
        pipeline.urgent = None;
    }
}
