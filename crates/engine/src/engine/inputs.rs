//! Applying one input to the state, before anything is decided: observations, artifacts,
//! operator commands, plan and topology changes, pipelines added and removed.
//!
//! Each input says what it concerns ([`Concerns`]): the pipelines whose decisions it may change
//! (a box report concerns the pipelines deploying to that target, an alarm reading the
//! pipelines reading that alarm), and whether it moved the global record.

use super::*;

impl Engine {
    /// Applies the input to the state; returns what it concerns.
    pub(super) fn apply(
        &mut self,
        now: Timestamp,
        input: Input,
        actions: &mut Vec<Action>,
    ) -> Concerns {
        let mut notify = |event| actions.push(Action::Notify(event));
        match input {
            Input::ControllerStarted { epoch } => {
                if epoch <= self.epoch {
                    notify(Event::CommandRejected {
                        id: format!("epoch-{epoch}"),
                        by: "controller".into(),
                        reason: format!("epoch {epoch} is not above the current {}", self.epoch),
                    });
                    return Concerns::nothing();
                }
                self.epoch = epoch;
                // Ids under a new epoch start above every id of the epochs before it.
                let first = epoch
                    .checked_shl(crate::records::COMMAND_IDS_PER_EPOCH_BITS)
                    .unwrap_or(u64::MAX / 2);
                self.next_command = self.next_command.max(first);
                let reissue = self.planted_bug == Some(crate::PlantedBug::ReissueOnRestart);
                for pipeline in self.pipelines.values_mut() {
                    for target in pipeline.targets.values_mut() {
                        for state in target.fleet.boxes.values_mut() {
                            if let Some(pending) = &mut state.pending {
                                pending.last_sent = None;
                                if reissue {
                                    self.next_command += 1;
                                    pending.id = CommandId(self.next_command);
                                }
                            }
                        }
                    }
                    for stage in &mut pipeline.stages {
                        if let Some(StageRun { phase: StagePhase::Testing { gates }, .. }) =
                            &mut stage.run
                        {
                            for gate in gates {
                                gate.last_sent = None;
                            }
                        }
                    }
                }
                Concerns::Global { every_pipeline: true }
            }
            Input::ArtifactReady { pipeline: name, artifact } => {
                let Some(pipeline) = self.pipelines.get_mut(&name) else {
                    return Concerns::nothing();
                };
                let sequence = artifact.sequence;
                match pipeline.artifacts.get_mut(&sequence) {
                    Some(known) if known.digest == artifact.digest => {
                        // The same artifact again, perhaps with reviews added since.
                        known.commits = artifact.commits;
                        return Concerns::one(name);
                    }
                    Some(known) => {
                        let reason =
                            format!("position {sequence} already belongs to {}", known.digest);
                        notify(Event::ArtifactRefused {
                            pipeline: name.clone(),
                            artifact: artifact.digest,
                            reason,
                        });
                        return Concerns::one(name);
                    }
                    None => {}
                }
                let refused = !artifact.signature_verified;
                if refused {
                    notify(Event::ArtifactRefused {
                        pipeline: name.clone(),
                        artifact: artifact.digest,
                        reason: "its signature or provenance was not verified".into(),
                    });
                } else {
                    notify(Event::ArtifactAccepted {
                        pipeline: name.clone(),
                        artifact: artifact.digest,
                    });
                }
                pipeline.artifacts.insert(
                    sequence,
                    Artifact {
                        sequence,
                        previous: artifact.previous,
                        digest: artifact.digest,
                        commits: artifact.commits,
                        packages: artifact.packages,
                        recalled: false,
                        refused,
                    },
                );
                forget_old_artifacts(pipeline);
                Concerns::one(name)
            }
            Input::TestGateResult { pipeline: name, command, passed, detail } => {
                let Some(pipeline) = self.pipelines.get_mut(&name) else {
                    return Concerns::nothing();
                };
                for (stage, state) in pipeline.plan.stages.iter().zip(&mut pipeline.stages) {
                    let Some(StageRun { phase: StagePhase::Testing { gates }, artifact, .. }) =
                        &mut state.run
                    else {
                        continue;
                    };
                    if let Some(gate) = gates
                        .iter_mut()
                        .find(|gate| gate.command == command && gate.passed.is_none())
                    {
                        gate.passed = Some(passed);
                        notify(Event::TestGateFinished {
                            pipeline: name.clone(),
                            stage: stage.name.clone(),
                            gate: gate.gate.clone(),
                            artifact: *artifact,
                            passed,
                            detail: detail.clone(),
                        });
                    }
                }
                Concerns::one(name)
            }
            // A report stamped later than now comes from a clock that runs ahead: it counts as
            // made now, so it can neither stay fresh past its time nor shut out the reports
            // that follow it.
            Input::Fleet { service, target, observed_at, boxes } => {
                let Some(users) = self.users.get(&(service, target.clone())) else {
                    return Concerns::nothing();
                };
                let observed_at = observed_at.min(now);
                for name in users {
                    let Some(state) =
                        self.pipelines.get_mut(name).and_then(|p| p.targets.get_mut(&target))
                    else {
                        continue;
                    };
                    let seen = boxes
                        .iter()
                        .map(|report| (report.for_pipeline(name), report.observed_at))
                        .collect();
                    state.fleet.apply_snapshot(observed_at, seen);
                }
                Concerns::Pipelines(users.iter().cloned().collect())
            }
            Input::Alarm { alarm, region, state, observed_at } => {
                let observed_at = observed_at.min(now);
                let readers: Vec<String> = self
                    .alarm_readers
                    .get(&alarm)
                    .map(|readers| readers.iter().cloned().collect())
                    .unwrap_or_default();
                let slot = self.alarms.entry(alarm).or_default().entry(region.unwrap_or_default());
                let reading = AlarmReading { state, observed_at };
                let replaced = match slot {
                    std::collections::btree_map::Entry::Vacant(vacant) => {
                        vacant.insert(reading);
                        Some(None)
                    }
                    std::collections::btree_map::Entry::Occupied(mut occupied) => {
                        (occupied.get().observed_at < observed_at)
                            .then(|| Some(occupied.insert(reading).state))
                    }
                };
                if let (Some(old), Some(count)) = (replaced, &mut self.firing) {
                    let was = old == Some(AlarmState::Alarm);
                    match (was, state == AlarmState::Alarm) {
                        (false, true) => *count += 1,
                        (true, false) => *count -= 1,
                        _ => {}
                    }
                }
                Concerns::Pipelines(readers)
            }
            Input::DataPoints { pipeline: name, target, artifact, metric, count, observed_at } => {
                let observed_at = observed_at.min(now);
                let Some(state) =
                    self.pipelines.get_mut(&name).and_then(|p| p.targets.get_mut(&target))
                else {
                    return Concerns::nothing();
                };
                let readings = state.data_points.entry(metric).or_default();
                let newer = readings.get(&artifact).is_none_or(|old| old.observed_at < observed_at);
                if newer {
                    readings.insert(artifact, DataPointReading { count, observed_at });
                }
                while readings.len() > MAX_DATA_POINT_ARTIFACTS {
                    let oldest = readings
                        .iter()
                        .min_by_key(|(_, reading)| reading.observed_at)
                        .map(|(digest, _)| *digest)
                        .expect("not empty");
                    readings.remove(&oldest);
                }
                Concerns::one(name)
            }
            Input::ContentBlocklist(list) => {
                self.content = list;
                Concerns::Global { every_pipeline: true }
            }
            Input::Operator { id, by, command } => {
                if self.recent_operator_commands.contains(&id) {
                    return Concerns::nothing();
                }
                self.recent_operator_commands.push_back(id.clone());
                if self.recent_operator_commands.len() > MAX_REMEMBERED_OPERATOR_COMMANDS {
                    self.recent_operator_commands.pop_front();
                }
                let name = command.pipeline().to_string();
                let Some(pipeline) = self.pipelines.get_mut(&name) else {
                    notify(Event::CommandRejected {
                        id,
                        by,
                        reason: format!("no pipeline {name:?}"),
                    });
                    return Concerns::Global { every_pipeline: false };
                };
                let mut events = Vec::new();
                let silent = self.planted_bug == Some(crate::PlantedBug::UnauditedCommands);
                match operate(pipeline, now, &id, &by, command, &mut events) {
                    Ok(_) if silent => {}
                    Ok(summary) => notify(Event::CommandAccepted { id, by, summary }),
                    Err(reason) => notify(Event::CommandRejected { id, by, reason }),
                }
                for event in events {
                    notify(event);
                }
                Concerns::GlobalAnd(name)
            }
            Input::UpdatePlan { plan } => {
                let name = plan.pipeline.clone();
                let id = format!("plan-{name}");
                let refuse = |reason: String| Event::CommandRejected {
                    id: id.clone(),
                    by: "spec".into(),
                    reason,
                };
                let Some(pipeline) = self.pipelines.get(&name) else {
                    notify(refuse(format!("no pipeline {name:?}")));
                    return Concerns::nothing();
                };
                if let Err(error) = validate_plan(&plan, &self.region_zones) {
                    notify(refuse(error.to_string()));
                    return Concerns::nothing();
                }
                if plan.service != pipeline.plan.service {
                    notify(refuse("a plan update may not change the pipeline's service".into()));
                    return Concerns::nothing();
                }
                let newest = self
                    .plans
                    .range((name.clone(), 0)..=(name.clone(), u32::MAX))
                    .map(|((_, version), _)| *version)
                    .max()
                    .unwrap_or(0);
                let version = newest + 1;
                let replaced = pipeline.pending_plan;
                if let Some(old) = replaced {
                    self.plans.remove(&(name.clone(), old));
                    self.maybe_gone.insert(crate::records::plan_key(&name, old));
                }
                self.plans.insert((name.clone(), version), Arc::new(*plan));
                self.pipelines.get_mut(&name).expect("looked up above").pending_plan =
                    Some(version);
                self.index();
                notify(Event::CommandAccepted {
                    id,
                    by: "spec".into(),
                    summary: format!(
                        "plan version {version} accepted; the next artifact to enter takes it"
                    ),
                });
                Concerns::one(name)
            }
            Input::AddPipeline { plan } => {
                let name = plan.pipeline.clone();
                let id = format!("add-{name}");
                let refused = if self.pipelines.contains_key(&name) {
                    Some(format!("pipeline {name:?} exists already"))
                } else {
                    validate_plan(&plan, &self.region_zones).err().map(|error| error.to_string())
                };
                if let Some(reason) = refused {
                    notify(Event::CommandRejected { id, by: "spec".into(), reason });
                    return Concerns::nothing();
                }
                self.insert_pipeline(*plan);
                self.index();
                notify(Event::CommandAccepted {
                    id,
                    by: "spec".into(),
                    summary: format!("pipeline {name} added"),
                });
                Concerns::one(name)
            }
            Input::RemovePipeline { pipeline: name } => {
                let id = format!("remove-{name}");
                let Some(pipeline) = self.pipelines.get(&name) else {
                    notify(Event::CommandRejected {
                        id,
                        by: "spec".into(),
                        reason: format!("no pipeline {name:?}"),
                    });
                    return Concerns::nothing();
                };
                if let Some(busy) = busy(pipeline) {
                    notify(Event::CommandRejected {
                        id,
                        by: "spec".into(),
                        reason: format!("{name} is {busy}; remove it once it is idle"),
                    });
                    return Concerns::nothing();
                }
                let keys = self.keys_of(&name);
                self.maybe_gone.extend(keys);
                let removed = self.pipelines.remove(&name).expect("looked up above");
                if let Some(wake) = removed.wake {
                    self.wakes.remove(&(wake, name.clone()));
                }
                self.plans.retain(|(pipeline, _), _| pipeline != &name);
                self.window_cache.remove(&name);
                self.index();
                notify(Event::CommandAccepted {
                    id,
                    by: "spec".into(),
                    summary: format!("pipeline {name} removed"),
                });
                // The pipelines that shared its targets may take those boxes now.
                let service = &removed.plan.service;
                let sharing: BTreeSet<String> = removed
                    .targets
                    .keys()
                    .filter_map(|target| self.users.get(&(service.clone(), target.clone())))
                    .flatten()
                    .cloned()
                    .collect();
                Concerns::Pipelines(sharing.into_iter().collect())
            }
            Input::Topology { region_zones } => {
                let unknown = self.pipelines.values().find_map(|pipeline| {
                    pipeline
                        .plan
                        .production_stages()
                        .flat_map(|stage| &stage.steps)
                        .flat_map(|step| &step.targets)
                        .find(|target| !region_zones.contains_key(&target.region))
                        .map(|target| (pipeline.plan.pipeline.clone(), target.region.clone()))
                });
                let refused = match (check_zones(&region_zones), unknown) {
                    (Err(error), _) => Some(error.to_string()),
                    (Ok(()), Some((pipeline, region))) => Some(format!(
                        "region {region} is still deployed by {pipeline}; change its plan first"
                    )),
                    (Ok(()), None) => None,
                };
                if let Some(reason) = refused {
                    notify(Event::CommandRejected {
                        id: "topology".into(),
                        by: "spec".into(),
                        reason,
                    });
                    return Concerns::nothing();
                }
                self.region_zones = region_zones;
                self.window_cache.clear();
                notify(Event::CommandAccepted {
                    id: "topology".into(),
                    by: "spec".into(),
                    summary: format!("topology of {} regions", self.region_zones.len()),
                });
                Concerns::Global { every_pipeline: true }
            }
            Input::Tick => Concerns::Everyone,
        }
    }

    /// Moves a pipeline with a pending plan onto it once nothing is in flight on the current
    /// one: stages keep their history by name, new targets join, targets no longer deployed
    /// are dropped.
    pub(super) fn switch_plan_when_idle(&mut self, name: &str, actions: &mut Vec<Action>) {
        let Some(pipeline) = self.pipelines.get(name) else { return };
        let Some(version) = pipeline.pending_plan else { return };
        if in_flight(pipeline) {
            return;
        }
        let Some(plan) = self.plans.get(&(name.to_string(), version)).cloned() else { return };
        let old_version = pipeline.plan_version;
        let old_keys = self.keys_of(name);
        let pipeline = self.pipelines.get_mut(name).expect("looked up above");
        let old_stages: BTreeMap<String, StageState> = pipeline
            .plan
            .stages
            .iter()
            .map(|stage| stage.name.clone())
            .zip(std::mem::take(&mut pipeline.stages))
            .collect();
        // A stage new in this version takes only artifacts newer than every one known now:
        // the artifacts of the old version finished on it.
        let newest = pipeline.artifacts.keys().next_back().copied();
        pipeline.stages = plan
            .stages
            .iter()
            .map(|stage| {
                old_stages
                    .get(&stage.name)
                    .cloned()
                    .unwrap_or(StageState { last_entered: newest, ..StageState::default() })
            })
            .collect();
        let mut targets = std::mem::take(&mut pipeline.targets);
        pipeline.targets = crate::records::plan_targets(&plan)
            .map(|target| {
                let state = targets.remove(&target).unwrap_or_default();
                (target, state)
            })
            .collect();
        pipeline.plan = plan;
        pipeline.plan_version = version;
        pipeline.pending_plan = None;
        self.plans.remove(&(name.to_string(), old_version));
        self.maybe_gone.extend(old_keys);
        self.window_cache.remove(name);
        self.index();
        actions.push(Action::Notify(Event::PlanVersionStarted {
            pipeline: name.to_string(),
            version,
        }));
    }
}

/// Whether an artifact is in flight on the pipeline's current plan: a stage runs it (and has not
/// failed), or it passed a stage and waits to enter the next.
pub(super) fn in_flight(pipeline: &Pipeline) -> bool {
    let running = pipeline.stages.iter().any(|state| {
        state.run.as_ref().is_some_and(|run| !matches!(run.phase, StagePhase::Failed { .. }))
    });
    let waiting = pipeline.stages.windows(2).any(|pair| {
        pair[0].passed.is_some_and(|passed| pair[1].last_entered.is_none_or(|e| e < passed))
    });
    running || waiting
}

/// Why a pipeline may not be removed now, if it may not.
fn busy(pipeline: &Pipeline) -> Option<&'static str> {
    let deploying = pipeline.stages.iter().any(|state| {
        state.run.as_ref().is_some_and(|run| {
            run.phase.started() && !matches!(run.phase, StagePhase::Failed { .. })
        })
    });
    if deploying {
        return Some("deploying");
    }
    let targets = pipeline.targets.values();
    if targets.clone().any(|target| target.rollback.is_some()) {
        return Some("rolling back");
    }
    if targets.flat_map(|t| t.fleet.boxes.values()).any(|b| b.pending.is_some()) {
        return Some("waiting for box commands");
    }
    None
}

pub(super) fn forget_old_artifacts(pipeline: &mut Pipeline) {
    while pipeline.artifacts.len() > MAX_ARTIFACTS_PER_PIPELINE {
        let referenced: BTreeSet<&Digest> = pipeline
            .targets
            .values()
            .flat_map(|target| {
                target.known_good.iter().chain(target.rollback.as_ref().map(|r| &r.to))
            })
            .chain(
                pipeline
                    .stages
                    .iter()
                    .filter_map(|stage| stage.run.as_ref().map(|run| &run.artifact)),
            )
            .collect();
        let passed: BTreeSet<u64> =
            pipeline.stages.iter().filter_map(|stage| stage.passed).collect();
        let oldest = pipeline
            .artifacts
            .values()
            .find(|artifact| {
                !referenced.contains(&artifact.digest) && !passed.contains(&artifact.sequence)
            })
            .map(|artifact| artifact.sequence);
        match oldest {
            Some(sequence) => {
                pipeline.artifacts.remove(&sequence);
                pipeline.forgotten_below = pipeline.forgotten_below.max(sequence + 1);
            }
            None => break,
        }
    }
}
