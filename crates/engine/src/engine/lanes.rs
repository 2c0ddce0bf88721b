//! Lanes and bakes: each region's way through a stage's steps, one zone or cell at a time, and
//! the bake after each step, which counts only evidence gathered since that step deployed.

use super::*;

/// The lane of `region` in stage `index`, which must be rolling out.
pub(super) fn lane_mut<'a>(pipeline: &'a mut Pipeline, index: usize, region: &str) -> &'a mut Lane {
    match &mut pipeline.stages[index].run {
        Some(StageRun { phase: StagePhase::Rollout { lanes }, .. }) => {
            lanes.get_mut(region).expect("a lane of the stage")
        }
        _ => unreachable!("lanes exist only while a stage rolls out"),
    }
}

/// Moves one region's lane forward; `true` when it baked its step and moved on to the next.
pub(super) fn advance_lane(
    pipeline: &mut Pipeline,
    index: usize,
    region: &str,
    failing: &mut Vec<(Target, String)>,
    context: &mut Context,
) -> bool {
    let now = context.now;
    let plan = Arc::clone(&pipeline.plan);
    let name = &plan.pipeline;
    let stage = &plan.stages[index];
    let run = pipeline.stages[index].run.as_ref().expect("advancing a running stage");
    let (sequence, digest) = (run.sequence, run.artifact);
    let lane = lane_mut(pipeline, index, region);
    let step = &stage.steps[lane.step];
    // Borrowed from the plan: the lane holds the same target (checked after every step).
    let target = stage.target_in_region(lane.step, region).expect("the lane's step deploys here");
    // Taken out while it is worked on and put back on every way out; meanwhile the lane reads
    // as not started, which is what it is whenever blockers are read.
    let mut next = std::mem::replace(&mut lane.phase, TargetPhase::Waiting);
    let held =
        pipeline.holds.iter().any(|hold| hold.stage.as_ref().is_none_or(|s| s == &stage.name));
    match &next {
        TargetPhase::Waiting => {
            let state = &pipeline.targets[target];
            let fresh = state
                .fleet
                .observed_at
                .is_some_and(|at| now.duration_since(at) <= seconds(MAX_OBSERVATION_AGE));
            let mut blockers = blockers_for(pipeline, index, step, sequence, target, context);
            let mut lifted = Vec::new();
            blockers.retain(|blocker| {
                match pipeline
                    .overrides
                    .iter()
                    .find(|over| over.lifts(blocker.kind, &stage.name, target, now))
                {
                    Some(over) => {
                        lifted.push((blocker.clone(), over.id.clone()));
                        false
                    }
                    None => true,
                }
            });
            for blocker in &blockers {
                if let Some(at) = blocker.clears_at {
                    context.wake_at(at);
                }
            }
            let lane = lane_mut(pipeline, index, region);
            if lane.blockers != blockers {
                lane.blockers = blockers.clone();
                context.notify(Event::Blocked {
                    pipeline: name.clone(),
                    stage: stage.name.clone(),
                    target: target.clone(),
                    artifact: digest,
                    blockers: blockers.clone(),
                });
            }
            let state = &pipeline.targets[target];
            // Boxes that already run an artifact of this pipeline, none of it known good yet
            // (its boxes were never all healthy on one artifact since the engine first saw
            // them, say while another pipeline moved them): a deployment now would have
            // nothing to roll back to, so it waits for the target to be adopted.
            // Boxes on this very artifact (an earlier step of the stage put it there) are the
            // stage's own work, not another artifact to roll back to.
            let nothing_to_roll_back_to = state.known_good.is_empty()
                && state
                    .fleet
                    .boxes
                    .values()
                    .any(|b| b.observation.running.is_some_and(|running| running != digest));
            if !blockers.is_empty() || !fresh || state.rollback.is_some() || nothing_to_roll_back_to
            {
                lane_mut(pipeline, index, region).phase = next;
                return false;
            }
            for (blocker, override_id) in lifted {
                context.notify(Event::BlockerOverridden {
                    pipeline: name.clone(),
                    target: target.clone(),
                    blocker,
                    override_id,
                });
            }
            context.notify(Event::DeploymentStarted {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: digest,
            });
            let size = state.fleet.size();
            let floor = capacity::minimum_healthy(stage.deployment.minimum_healthy_hosts, size);
            let invalid = if size == 0 {
                Some("the target has no boxes".to_string())
            } else if let Some(Err(error)) = (step.kind == StepKind::OneBox)
                .then(|| one_box_allowed(pipeline, stage, step, target))
            {
                Some(error.to_string())
            } else if !capacity::floor_allows_progress(floor, size) {
                Some(format!(
                    "HEALTH_CONSTRAINTS_INVALID: a floor of {floor} healthy of {size} boxes leaves no box to deploy"
                ))
            } else {
                None
            };
            if let Some(reason) = invalid {
                context.notify(Event::DeploymentFailed {
                    pipeline: name.clone(),
                    stage: stage.name.clone(),
                    step: step.name.clone(),
                    target: target.clone(),
                    artifact: digest,
                    reason: reason.clone(),
                });
                failing.push((target.clone(), reason));
                lane_mut(pipeline, index, region).phase = next;
                return false;
            }
            next = TargetPhase::Deploying {
                started_at: now,
                attempted: BTreeSet::new(),
                failed: BTreeSet::new(),
                stuck_since: None,
                stuck_reported: false,
            };
        }
        // Advanced below, together with a deployment that started just now.
        TargetPhase::Deploying { .. } => {}
        TargetPhase::Deployed { .. } => {
            // Every box that ran the artifact is gone (scaled in, replaced): the bake has
            // nothing to watch, so the step starts again (blockers apply) and bakes afresh.
            let fleet = &pipeline.targets[target].fleet;
            let fresh = fleet
                .observed_at
                .is_some_and(|at| now.duration_since(at) <= seconds(MAX_OBSERVATION_AGE));
            let gone =
                !fleet.boxes.values().any(|b| b.observation.running.as_ref() == Some(&digest));
            if fresh && gone {
                next = TargetPhase::Waiting;
                let lane = lane_mut(pipeline, index, region);
                lane.bake_started = None;
                lane.evidence_wait_reported = false;
            }
        }
        TargetPhase::Baked { .. } | TargetPhase::Halted => {
            lane_mut(pipeline, index, region).phase = next;
            return false;
        }
    }
    if matches!(next, TargetPhase::Deploying { .. }) {
        let outcome = advance_deployment(
            pipeline, stage, step.kind, target, &digest, &mut next, held, context,
        );
        for (reason, boxes) in std::mem::take(&mut context.stuck) {
            context.notify(Event::DeploymentStuck {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: digest,
                reason: reason.clone(),
                boxes,
            });
            context.actions.push(Action::Page {
                pipeline: name.clone(),
                target: target.clone(),
                reason,
            });
        }
        if let Some(outcome) = outcome {
            finish_target(name, stage, step, target, &digest, outcome, &mut next, failing, context);
        }
    }
    let deployed = matches!(next, TargetPhase::Deployed { .. });
    lane_mut(pipeline, index, region).phase = next;
    failing.is_empty() && deployed && bake_lane(pipeline, index, region, &digest, context)
}

/// Reports a target's finished deployment.
#[allow(clippy::too_many_arguments, reason = "one call site each; a struct would only rename them")]
pub(super) fn finish_target(
    pipeline: &str,
    stage: &Stage,
    step: &gantry_model::Step,
    target: &Target,
    artifact: &Digest,
    outcome: Result<(), String>,
    phase: &mut TargetPhase,
    failing: &mut Vec<(Target, String)>,
    context: &mut Context,
) {
    match outcome {
        Ok(()) => {
            *phase = TargetPhase::Deployed { at: context.now };
            context.notify(Event::DeploymentSucceeded {
                pipeline: pipeline.into(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: *artifact,
            });
        }
        Err(reason) => {
            context.notify(Event::DeploymentFailed {
                pipeline: pipeline.into(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: *artifact,
                reason: reason.clone(),
            });
            failing.push((target.clone(), reason));
        }
    }
}

/// Bakes a lane whose step deployed; `true` when the bake completed and the lane moved on to
/// its region's next step.
pub(super) fn bake_lane(
    pipeline: &mut Pipeline,
    index: usize,
    region: &str,
    digest: &Digest,
    context: &mut Context,
) -> bool {
    let now = context.now;
    note_evidence_from(pipeline, index, region, digest);
    let name = pipeline.plan.pipeline.clone();
    let plan = Arc::clone(&pipeline.plan);
    let stage = &plan.stages[index];
    let urgent = pipeline.urgent.as_ref().is_some_and(|urgent| urgent.artifact == *digest);
    let minimum_bake_percent = plan.urgent.minimum_bake_percent.min(100);
    let lane = lane_mut(pipeline, index, region);
    let step = &stage.steps[lane.step];
    let target = lane.target.clone();
    let bake = stage.bake_in_region(lane.step, region);
    let mut duration = model_seconds(bake.duration);
    if urgent {
        duration = seconds(duration.as_secs() * i64::from(minimum_bake_percent) / 100);
    }
    let started = *lane.bake_started.get_or_insert_with(|| {
        context.notify(Event::BakeStarted {
            pipeline: name.clone(),
            stage: stage.name.clone(),
            step: step.name.clone(),
            target: target.clone(),
            artifact: *digest,
            until: now + duration,
        });
        now
    });
    let evidence_wait_reported = lane.evidence_wait_reported;
    if context.planted(crate::PlantedBug::NextZoneBeforeBake)
        && let Some(next) = stage.next_step_in_region(Some(lane.step), region)
        && stage.target_in_region(next, region) != Some(&target)
    {
        let next_target = stage.target_in_region(next, region).expect("found").clone();
        *lane = Lane::at(next, next_target);
        return true;
    }
    let skip = context.planted(crate::PlantedBug::SkipBake);
    if now < started + duration && !skip {
        context.wake_at(started + duration);
        return false;
    }
    let mut missing = Vec::new();
    let evidence_from = lane_mut(pipeline, index, region).evidence_from.clone();
    for (metric, needed) in &bake.data_points {
        let seen = own_data_points(&pipeline.targets[&target], &evidence_from, metric, digest);
        if seen < *needed {
            missing.push(format!("{target}: {metric} has {seen} of {needed} data points"));
        }
    }
    for alarm in rollback_alarms(&plan, stage, step) {
        match context.alarm(alarm, region) {
            Some(reading)
                if reading.state == AlarmState::Ok
                    && context.alarm_is_fresh(&reading)
                    && reading.observed_at >= started => {}
            _ => missing
                .push(format!("{target}: no fresh OK reading of {alarm} since the bake began")),
        }
    }
    if !missing.is_empty() && !skip {
        context.wake_at(now + seconds(EVIDENCE_RECHECK));
        if !evidence_wait_reported {
            lane_mut(pipeline, index, region).evidence_wait_reported = true;
            context.notify(Event::BakeWaitingForEvidence {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: *digest,
                missing,
            });
        }
        return false;
    }
    context.notify(Event::StepBaked {
        pipeline: name.clone(),
        stage: stage.name.clone(),
        step: step.name.clone(),
        target: target.clone(),
        artifact: *digest,
    });
    if step.kind != StepKind::OneBox {
        let known_good = &mut pipeline.targets.get_mut(&target).expect("plan target").known_good;
        known_good.retain(|known| known != digest);
        known_good.push(*digest);
        if known_good.len() > MAX_KNOWN_GOOD_PER_TARGET {
            known_good.remove(0);
        }
    }
    let lane = lane_mut(pipeline, index, region);
    let steps_baked = lane.steps_baked + 1;
    match stage.next_step_in_region(Some(lane.step), region) {
        Some(next) => {
            let target = stage.target_in_region(next, region).expect("found above").clone();
            *lane = Lane { steps_baked, ..Lane::at(next, target) };
            true
        }
        None => {
            lane.steps_baked = steps_baked;
            lane.phase = TargetPhase::Baked { at: now };
            false
        }
    }
}

/// Notes, per metric the lane's bake needs, the first cumulative count of the artifact's data
/// points reported since this step's deployment finished: what the step's own evidence is
/// counted from. A reading made before then may include an earlier step's traffic on the same
/// target (the one box and zone 1 share one), so it never serves.
fn note_evidence_from(pipeline: &mut Pipeline, index: usize, region: &str, digest: &Digest) {
    let plan = Arc::clone(&pipeline.plan);
    let lane = lane_mut(pipeline, index, region);
    let TargetPhase::Deployed { at: deployed_at } = lane.phase else { return };
    let bake = plan.stages[index].bake_in_region(lane.step, region);
    let target = lane.target.clone();
    let missing: Vec<&String> = bake
        .data_points
        .keys()
        .filter(|metric| !lane.evidence_from.contains_key(*metric))
        .collect();
    if missing.is_empty() {
        return;
    }
    let state = &pipeline.targets[&target];
    let found: Vec<(String, u64)> = missing
        .into_iter()
        .filter_map(|metric| {
            let reading = state.data_points.get(metric)?.get(digest)?;
            (reading.observed_at >= deployed_at).then(|| (metric.clone(), reading.count))
        })
        .collect();
    lane_mut(pipeline, index, region).evidence_from.extend(found);
}

/// The data points of `metric` the artifact served on the target since the lane's step
/// deployed: the latest cumulative count less the count it started from; none until a reading
/// since the deployment exists.
fn own_data_points(
    state: &TargetState,
    evidence_from: &BTreeMap<String, u64>,
    metric: &str,
    digest: &Digest,
) -> u64 {
    let Some(from) = evidence_from.get(metric) else { return 0 };
    state
        .data_points
        .get(metric)
        .and_then(|readings| readings.get(digest))
        .map_or(0, |reading| reading.count.saturating_sub(*from))
}

/// Whether a one-box step may take one box of `target`: its share of the scope the step stands
/// for (the region's boxes of the stage, or the target's own), by the one rule in
/// [`gantry_model::plan::one_box_share`].
fn one_box_allowed(
    pipeline: &Pipeline,
    stage: &Stage,
    step: &gantry_model::Step,
    target: &Target,
) -> Result<(), gantry_model::plan::OneBoxShareError> {
    let scope = step.one_box_of.unwrap_or(gantry_model::OneBoxScope::Zone);
    let boxes = match scope {
        gantry_model::OneBoxScope::Zone => pipeline.targets[target].fleet.size(),
        gantry_model::OneBoxScope::Region => stage
            .steps
            .iter()
            .flat_map(|step| &step.targets)
            .filter(|other| other.region == target.region)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|other| pipeline.targets[other].fleet.size())
            .sum(),
    };
    gantry_model::plan::one_box_share(boxes, scope, stage.deployment.one_box_percent)
}
