//! Box commands: issuing, settling and re-sending them; forward deployments in batches above
//! the capacity floor; rollbacks; repairs of boxes that run nothing.

use super::*;

pub(super) fn command_deadline(now: Timestamp, strategy: &DeploymentStrategy) -> Timestamp {
    now + model_seconds(strategy.hook_timeout) + model_seconds(strategy.health_check_timeout)
}

/// Records a command on a box and emits it.
#[allow(
    clippy::too_many_arguments,
    reason = "the command's fields, each borrowed from a different place"
)]
pub(super) fn issue(
    context: &mut Context,
    pipeline: &str,
    target: &Target,
    fleet: &mut Fleet,
    box_id: &BoxId,
    artifact: &Digest,
    kind: CommandKind,
    strategy: &DeploymentStrategy,
) {
    let id = context.command_id();
    let now = context.now;
    let deadline = command_deadline(now, strategy);
    let state = fleet.boxes.get_mut(box_id).expect("issuing to a known box");
    state.pending = Some(PendingCommand {
        id,
        kind,
        artifact: *artifact,
        issued_at: now,
        last_sent: Some(now),
        deadline,
    });
    state.last_command_at = Some(now);
    state.last_command_artifact = Some(*artifact);
    let command = BoxCommand {
        id,
        epoch: context.epoch,
        pipeline: pipeline.into(),
        target: target.clone(),
        box_id: box_id.clone(),
        artifact: *artifact,
        kind,
    };
    context.actions.push(match kind {
        CommandKind::RollBack => Action::RollBack(command),
        CommandKind::Deploy | CommandKind::Repair => Action::Deploy(command),
    });
    context.wake_at(deadline);
    context.wake_at(now + seconds(RESEND_UNOBSERVED));
}

/// Clears commands that finished, failed or timed out. Returns whether commands remain
/// outstanding, and whether a box runs nothing (a repair candidate).
///
/// A target with no snapshot since the engine started settles nothing: its boxes' state is
/// unknown, so a command is neither done nor failed yet, and no box runs nothing as far as
/// the engine knows.
pub(super) fn settle_pending(target: &mut TargetState, now: Timestamp) -> (bool, bool) {
    if !target.fleet.observed() {
        let outstanding = target.fleet.boxes.values().any(|state| state.pending.is_some());
        return (outstanding, false);
    }
    let mut outstanding = false;
    let mut empty = false;
    for (id, state) in &mut target.fleet.boxes {
        empty |= state.observation.running.is_none();
        let Some(pending) = &state.pending else { continue };
        let reported =
            state.observation.last_command.as_ref().filter(|outcome| outcome.command == pending.id);
        let failed = match reported {
            Some(outcome) => Some(!outcome.succeeded),
            None if state.healthy_on(&pending.artifact, now) => Some(false),
            None if now >= pending.deadline => Some(true),
            None => None,
        };
        if let Some(failed) = failed {
            if failed && matches!(pending.kind, CommandKind::Repair | CommandKind::RollBack) {
                target.backoff.insert(id.clone(), now + seconds(RETRY_BACKOFF));
            }
            state.pending = None;
        } else {
            outstanding = true;
        }
    }
    (outstanding, empty)
}

/// Moves one target's deployment forward; `Some` when it finished (succeeded or failed).
#[allow(clippy::too_many_arguments, reason = "the pieces of one deployment, borrowed separately")]
pub(super) fn advance_deployment(
    pipeline: &mut Pipeline,
    stage: &Stage,
    kind: StepKind,
    target: &Target,
    artifact: &Digest,
    phase: &mut TargetPhase,
    held: bool,
    context: &mut Context,
) -> Option<Result<(), String>> {
    let now = context.now;
    let TargetPhase::Deploying { attempted, failed, stuck_since, stuck_reported, .. } = phase
    else {
        return None;
    };
    let strategy = &stage.deployment;
    let name = pipeline.plan.pipeline.clone();
    let fleet = &mut pipeline.targets.get_mut(target).expect("plan target").fleet;
    // Restarted and not yet told what the boxes run: nothing is known to have failed or
    // finished, and no box is known to be free to take.
    if !fleet.observed() {
        return None;
    }
    let size = fleet.size();
    if size == 0 {
        return Some(Err("every box of the target is gone".into()));
    }
    let floor = capacity::minimum_healthy(strategy.minimum_healthy_hosts, size);
    let one_box = kind == StepKind::OneBox;
    let batch = if one_box { 1 } else { capacity::batch_limit(strategy.batch_size, size) };
    attempted.retain(|id| fleet.boxes.contains_key(id));
    let pending_here = |fleet: &Fleet, id: &BoxId| {
        fleet.boxes[id]
            .pending
            .as_ref()
            .is_some_and(|p| p.kind == CommandKind::Deploy && &p.artifact == artifact)
    };
    for id in attempted.iter() {
        if !pending_here(fleet, id) && !fleet.boxes[id].healthy_on(artifact, now) {
            failed.insert(id.clone());
        }
    }
    failed.retain(|id| fleet.boxes.contains_key(id));
    let in_flight = attempted.iter().filter(|id| pending_here(fleet, id)).count() as u32;
    let on_artifact =
        fleet.boxes.values().filter(|state| state.healthy_on(artifact, now)).count() as u32;
    if one_box {
        if on_artifact >= 1 {
            return Some(Ok(()));
        }
        if !attempted.is_empty() && in_flight == 0 {
            return Some(Err(format!(
                "the one box {} failed",
                attempted.iter().next().expect("non-empty")
            )));
        }
    }
    if !one_box
        && to_deploy(fleet, attempted, artifact, now, None).next().is_none()
        && in_flight == 0
    {
        return Some(if capacity::succeeded(on_artifact, floor) {
            Ok(())
        } else {
            Err(format!(
                "only {on_artifact} of {size} boxes run the artifact healthy; the floor needs {}",
                floor.max(1)
            ))
        });
    }
    if held || (one_box && !attempted.is_empty()) {
        *stuck_since = None;
        return None;
    }
    let mut in_flight = in_flight;
    let mut issued = 0;
    if !one_box {
        // Boxes already out of service cost no capacity: they go first.
        let room = batch.saturating_sub(in_flight) as usize;
        let unhealthy: Vec<BoxId> =
            to_deploy(fleet, attempted, artifact, now, Some(false)).take(room).cloned().collect();
        for id in unhealthy {
            issue(context, &name, target, fleet, &id, artifact, CommandKind::Deploy, strategy);
            attempted.insert(id);
            in_flight += 1;
            issued += 1;
        }
    }
    let mut take = capacity::healthy_boxes_to_take(fleet.healthy(now), floor, in_flight, batch);
    if context.planted(crate::PlantedBug::IgnoreCapacityFloor) {
        take = batch.saturating_sub(in_flight);
    }
    let healthy: Vec<BoxId> = to_deploy(fleet, attempted, artifact, now, Some(true))
        .take(take as usize)
        .cloned()
        .collect();
    for id in healthy {
        issue(context, &name, target, fleet, &id, artifact, CommandKind::Deploy, strategy);
        attempted.insert(id);
        in_flight += 1;
        issued += 1;
    }
    if issued == 0 && in_flight == 0 {
        let since = *stuck_since.get_or_insert(now);
        let limit = since + model_seconds(strategy.health_check_timeout);
        if now >= limit {
            return Some(Err(format!(
                "the capacity floor of {floor} healthy of {size} boxes left no box to take for {}",
                strategy.health_check_timeout
            )));
        }
        context.wake_at(limit);
        let report_at = since + seconds(STUCK_AFTER);
        if now < report_at {
            context.wake_at(report_at);
        } else if !*stuck_reported {
            *stuck_reported = true;
            let waiting: Vec<BoxId> =
                to_deploy(fleet, attempted, artifact, now, None).cloned().collect();
            let reason = format!(
                "deployment of {artifact} cannot make progress: the capacity floor of {floor} \
                 healthy of {size} boxes binds ({} healthy); waiting for capacity: {}; it fails \
                 at {limit}",
                fleet.healthy(now),
                list(&waiting)
            );
            context.stuck.push((reason, waiting));
        }
    } else {
        *stuck_since = None;
        *stuck_reported = false;
    }
    None
}

/// Boxes of a deployment still to take to `artifact`; `healthy` picks those in service (taking
/// them costs capacity) or those out of it.
pub(super) fn to_deploy<'a>(
    fleet: &'a Fleet,
    attempted: &'a BTreeSet<BoxId>,
    artifact: &'a Digest,
    now: Timestamp,
    healthy: Option<bool>,
) -> impl Iterator<Item = &'a BoxId> + 'a {
    fleet
        .boxes
        .iter()
        .filter(move |(id, state)| {
            !attempted.contains(*id)
                && !state.healthy_on(artifact, now)
                && state.pending.is_none()
                && !state.taken_elsewhere
                && healthy.is_none_or(|healthy| state.counts_as_healthy(now) == healthy)
        })
        .map(|(id, _)| id)
}

pub(super) fn advance_rollbacks(pipeline: &mut Pipeline, context: &mut Context) {
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    for (target, state) in &mut pipeline.targets {
        let Some(rollback) = &state.rollback else { continue };
        // Restarted and not yet told what the boxes run: a box's state is unknown, not
        // "out of service", so none is commanded until the target's first snapshot.
        if !state.fleet.observed() {
            continue;
        }
        let to = rollback.to;
        let strategy = strategy_for(&pipeline.plan, target);
        state.backoff.retain(|_, until| *until > now);
        let fleet = &mut state.fleet;
        let backoff = &state.backoff;
        let mut resting = false;
        let needing: Vec<BoxId> = fleet
            .boxes
            .iter()
            .filter(|(_, box_state)| {
                let done = box_state.pending.is_none() && box_state.healthy_on(&to, now);
                // Already on its way there (a rollback, or a repair of a box added mid-way):
                // commanding it again would install the same artifact twice.
                let heading = box_state.pending.as_ref().is_some_and(|p| p.artifact == to);
                !done && !heading
            })
            .filter(|(id, _)| match backoff.get(*id) {
                // Its last rollback failed: it rests, and the rollback is not finished.
                Some(until) if *until > now => {
                    resting = true;
                    false
                }
                _ => true,
            })
            .map(|(id, _)| id.clone())
            .collect();
        let in_flight = fleet
            .boxes
            .values()
            .filter(|b| b.pending.as_ref().is_some_and(|p| p.artifact == to))
            .count() as u32;
        if needing.is_empty() && in_flight == 0 && !resting {
            context.notify(Event::RollbackFinished {
                pipeline: name.clone(),
                target: target.clone(),
                to,
            });
            state.rollback = None;
            continue;
        }
        let size = fleet.size();
        let floor = capacity::minimum_healthy(strategy.minimum_healthy_hosts, size);
        let batch = capacity::batch_limit(strategy.rollback_batch_size, size);
        let mut in_flight = in_flight;
        // A box another pipeline is moving is commanded once it is free again.
        let needing: Vec<BoxId> =
            needing.into_iter().filter(|id| !fleet.boxes[id].taken_elsewhere).collect();
        let (unhealthy, healthy): (Vec<BoxId>, Vec<BoxId>) =
            needing.into_iter().partition(|id| !fleet.boxes[id].counts_as_healthy(now));
        for id in unhealthy {
            if in_flight >= batch {
                break;
            }
            issue(context, &name, target, fleet, &id, &to, CommandKind::RollBack, strategy);
            in_flight += 1;
        }
        let take = capacity::healthy_boxes_to_take(fleet.healthy(now), floor, in_flight, batch);
        let waiting: Vec<BoxId> = healthy.iter().skip(take as usize).cloned().collect();
        for id in healthy.into_iter().take(take as usize) {
            issue(context, &name, target, fleet, &id, &to, CommandKind::RollBack, strategy);
            in_flight += 1;
        }
        let done = fleet.boxes.values().filter(|b| b.healthy_on(&to, now)).count() as u32;
        let resting: Vec<BoxId> = backoff
            .iter()
            .filter(|(id, until)| **until > now && fleet.boxes.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        let healthy_now = fleet.healthy(now);
        let rollback = state.rollback.as_mut().expect("checked above");
        // Progress: a box reached the artifact since it was reported stuck.
        if rollback.stuck.as_ref().is_some_and(|stuck| done > stuck.boxes_done) {
            rollback.stuck = None;
        }
        if in_flight > 0 {
            rollback.stalled_since = None;
            continue;
        }
        let since = *rollback.stalled_since.get_or_insert(now);
        if now < since + seconds(STUCK_AFTER) {
            context.wake_at(since + seconds(STUCK_AFTER));
            continue;
        }
        if rollback.stuck.is_some() {
            continue;
        }
        let mut reason = format!(
            "rollback to {to} cannot make progress: the capacity floor of {floor} healthy of {size} \
             boxes binds ({healthy_now} healthy)"
        );
        if !waiting.is_empty() {
            reason.push_str(&format!(
                "; {} healthy box(es) wait for capacity: {}",
                waiting.len(),
                list(&waiting)
            ));
        }
        if !resting.is_empty() {
            reason.push_str(&format!(
                "; {} box(es) failed their rollback and rest: {}",
                resting.len(),
                list(&resting)
            ));
        }
        let boxes: Vec<BoxId> = waiting.into_iter().chain(resting).collect();
        rollback.stuck = Some(Stuck { reason: reason.clone(), boxes_done: done });
        context.notify(Event::RollbackStuck {
            pipeline: name.clone(),
            target: target.clone(),
            to,
            reason: reason.clone(),
            boxes,
        });
        context.actions.push(Action::Page {
            pipeline: name.clone(),
            target: target.clone(),
            reason,
        });
    }
}

/// Box ids for a reason, comma-separated.
pub(super) fn list(boxes: &[BoxId]) -> String {
    boxes.iter().map(BoxId::to_string).collect::<Vec<_>>().join(", ")
}

/// Installs the target's current artifact on boxes that run nothing (added mid-wave). Repairs
/// never change what a target runs, so no blocker applies to them. Only a box's report says it
/// runs nothing: one not heard from since a restart is left alone until it reports.
pub(super) fn repair(pipeline: &mut Pipeline, empty: &BTreeSet<Target>, context: &mut Context) {
    let unknown_is_empty = context.planted(crate::PlantedBug::RepairUnknownBoxes);
    let planted: BTreeSet<Target>;
    let empty = if unknown_is_empty {
        planted = pipeline
            .targets
            .iter()
            .filter(|(_, state)| !state.fleet.observed())
            .map(|(target, _)| target.clone())
            .chain(empty.iter().cloned())
            .collect();
        &planted
    } else {
        empty
    };
    if empty.is_empty() {
        return;
    }
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    let deploying: BTreeSet<Target> = pipeline
        .stages
        .iter()
        .filter_map(|state| match &state.run {
            Some(StageRun { phase: StagePhase::Rollout { lanes }, .. }) => Some(lanes.values()),
            _ => None,
        })
        .flatten()
        .filter(|lane| matches!(lane.phase, TargetPhase::Deploying { .. }))
        .map(|lane| lane.target.clone())
        .collect();
    let recalled: BTreeSet<&Digest> = pipeline
        .artifacts
        .values()
        .filter(|known| known.recalled)
        .map(|known| &known.digest)
        .collect();
    for target in empty {
        let state = pipeline.targets.get_mut(target).expect("plan target");
        // A box that has not reported since a restart is unknown, not empty.
        if state.rollback.is_some()
            || deploying.contains(target)
            || (!state.fleet.observed() && !unknown_is_empty)
        {
            continue;
        }
        state.backoff.retain(|_, until| *until > now);
        let empty: Vec<BoxId> = state
            .fleet
            .boxes
            .iter()
            .filter(|(id, box_state)| {
                box_state.observation.running.is_none()
                    && box_state.pending.is_none()
                    && !box_state.taken_elsewhere
                    && !state.backoff.contains_key(*id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if empty.is_empty() {
            continue;
        }
        let mut counts: BTreeMap<&Digest, u32> = BTreeMap::new();
        for box_state in state.fleet.boxes.values().filter(|b| b.counts_as_healthy(now)) {
            if let Some(running) = &box_state.observation.running {
                *counts.entry(running).or_default() += 1;
            }
        }
        let majority = counts.iter().max_by_key(|(_, count)| **count).map(|(digest, _)| *(*digest));
        let Some(desired) = majority.or_else(|| state.known_good.last().cloned()) else { continue };
        if recalled.contains(&desired) {
            continue;
        }
        let strategy = strategy_for(&pipeline.plan, target);
        let size = state.fleet.size();
        let batch = capacity::batch_limit(strategy.batch_size, size);
        let in_flight = state.fleet.in_flight(CommandKind::Repair);
        let room = batch.saturating_sub(in_flight);
        // A box running nothing may still report healthy, and is then capacity: repairing it
        // takes it out of service, so those repairs stay above the floor like any batch.
        let floor = capacity::minimum_healthy(strategy.minimum_healthy_hosts, size);
        let (unhealthy, healthy): (Vec<BoxId>, Vec<BoxId>) =
            empty.into_iter().partition(|id| !state.fleet.boxes[id].counts_as_healthy(now));
        let unhealthy: Vec<BoxId> = unhealthy.into_iter().take(room as usize).collect();
        let take = capacity::healthy_boxes_to_take(
            state.fleet.healthy(now),
            floor,
            in_flight + unhealthy.len() as u32,
            batch,
        );
        let chosen: Vec<BoxId> =
            unhealthy.into_iter().chain(healthy.into_iter().take(take as usize)).collect();
        for id in chosen {
            issue(
                context,
                &name,
                target,
                &mut state.fleet,
                &id,
                &desired,
                CommandKind::Repair,
                strategy,
            );
        }
    }
}

/// Re-sends the commands agents evidently lack (see [`RESEND_UNOBSERVED`]) on the targets that
/// had outstanding commands at the start of the pass, and asks to be woken for their deadlines.
/// (Commands issued in this pass registered their own wake-ups.)
pub(super) fn resend(
    pipeline: &mut Pipeline,
    outstanding: &BTreeSet<Target>,
    context: &mut Context,
) {
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    for target in outstanding {
        let state = pipeline.targets.get_mut(target).expect("plan target");
        for (id, box_state) in &mut state.fleet.boxes {
            let Some(pending) = &mut box_state.pending else { continue };
            context.wake_at(pending.deadline);
            // The agent has it: only the deadline matters now.
            if box_state.observation.in_progress == Some(pending.id) {
                continue;
            }
            // Re-sent when a report made after the send shows the agent lacks it (a finished
            // command was settled already), or when no report came for a while.
            if let Some(sent) = pending.last_sent
                && box_state.observed_at <= sent
                && now < sent + seconds(RESEND_UNOBSERVED)
            {
                context.wake_at(sent + seconds(RESEND_UNOBSERVED));
                continue;
            }
            context.wake_at(now + seconds(RESEND_UNOBSERVED));
            pending.last_sent = Some(now);
            let command = BoxCommand {
                id: pending.id,
                epoch: context.epoch,
                pipeline: name.clone(),
                target: target.clone(),
                box_id: id.clone(),
                artifact: pending.artifact,
                kind: pending.kind,
            };
            context.actions.push(match pending.kind {
                CommandKind::RollBack => Action::RollBack(command),
                CommandKind::Deploy | CommandKind::Repair => Action::Deploy(command),
            });
        }
    }
}
