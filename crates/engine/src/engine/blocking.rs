//! Blockers: everything that stops a deployment from *starting* now, and deployment windows.

use super::*;

/// Every blocker that applies to starting `target` in stage `index` with `artifact` now, before
/// overrides.
pub(super) fn blockers_for(
    pipeline: &Pipeline,
    index: usize,
    step: &gantry_model::Step,
    sequence: u64,
    target: &Target,
    context: &mut Context,
) -> Vec<Blocker> {
    let artifact = &pipeline.artifacts[&sequence];
    let stage = &pipeline.plan.stages[index];
    let mut blockers = Vec::new();
    // A step does not start while one of its own rollback alarms fires: it would roll back at once.
    for alarm in rollback_alarms(&pipeline.plan, stage, step) {
        if context.firing(alarm, &target.region) {
            blockers.push(Blocker {
                kind: BlockerKind::RollbackAlarm,
                name: alarm.clone(),
                reason: format!("rollback alarm {alarm} is in ALARM in {}", target.region),
                clears_at: None,
            });
        }
    }
    for hold in &pipeline.holds {
        if hold.stage.as_ref().is_none_or(|held| held == &stage.name) {
            blockers.push(Blocker {
                kind: BlockerKind::ManualHold,
                name: hold.by.clone(),
                reason: format!("held by {} since {}: {}", hold.by, hold.since, hold.reason),
                clears_at: None,
            });
        }
    }
    if !stage.kind.is_production() {
        return blockers;
    }
    let plan = &pipeline.plan;
    for (kind, alarms) in [
        (BlockerKind::TeamAlarm, &plan.alarm_blockers.team),
        (BlockerKind::OrganisationAlarm, &plan.alarm_blockers.organisation),
    ] {
        for alarm in alarms {
            let reason = match context.alarm(alarm, &target.region) {
                Some(reading) if !context.alarm_is_fresh(&reading) => {
                    format!("{alarm} has not reported since {} (fail closed)", reading.observed_at)
                }
                Some(AlarmReading { state: AlarmState::Ok, .. }) => continue,
                Some(AlarmReading { state: AlarmState::Alarm, .. }) => {
                    format!("{alarm} is in ALARM in {}", target.region)
                }
                Some(AlarmReading { state: AlarmState::InsufficientData, .. }) => {
                    format!("{alarm} has insufficient data in {} (fail closed)", target.region)
                }
                None => format!("{alarm} has never reported in {} (fail closed)", target.region),
            };
            blockers.push(Blocker { kind, name: alarm.clone(), reason, clears_at: None });
        }
    }
    let zone =
        context.region_zones.get(&target.region).expect("validated: production regions have zones");
    let verdict = window_verdict(context, &plan.pipeline, &plan.time_windows, &target.region, zone);
    match verdict {
        Ok((verdict, reason)) => {
            if verdict.closed_by.is_some() {
                blockers.push(Blocker {
                    kind: BlockerKind::TimeWindow,
                    name: "time-window".into(),
                    reason,
                    clears_at: verdict.next_open,
                });
            }
        }
        Err(error) => blockers.push(Blocker {
            kind: BlockerKind::TimeWindow,
            name: "time-window".into(),
            reason: format!("windows cannot be evaluated, so they count as closed: {error}"),
            clears_at: None,
        }),
    }
    // Every artifact this one contains; a missing link blocks.
    let (contained, missing) =
        crate::artifact::contained(&pipeline.artifacts, pipeline.forgotten_below, artifact);
    if let Some(position) = missing {
        blockers.push(Blocker {
            kind: BlockerKind::Unreviewed,
            name: format!("position {position}"),
            reason: format!(
                "the artifact at position {position}, built before this one, never arrived: \
                 its commits' reviews and content are unknown (fail closed)"
            ),
            clears_at: None,
        });
    }
    for known in contained {
        for commit in &known.commits {
            if context.content.commits.contains(&commit.id) {
                blockers.push(Blocker {
                    kind: BlockerKind::Content,
                    name: commit.id.clone(),
                    reason: format!(
                        "contains blocked commit {} (from {})",
                        commit.id, known.digest
                    ),
                    clears_at: None,
                });
            }
            if plan.code_review == CodeReview::Required && !commit.is_reviewed() {
                blockers.push(Blocker {
                    kind: BlockerKind::Unreviewed,
                    name: commit.id.clone(),
                    reason: format!(
                        "commit {} by {} has no approval from another person",
                        commit.id, commit.author
                    ),
                    clears_at: None,
                });
            }
        }
    }
    for package in &artifact.packages {
        if context.content.packages.contains(package) {
            blockers.push(Blocker {
                kind: BlockerKind::Content,
                name: package.to_string(),
                reason: format!("contains blocked package {package}"),
                clears_at: None,
            });
        }
    }
    let in_production = artifacts_in_production(pipeline);
    if !in_production.contains(&artifact.digest) {
        if let Some(urgent) = &pipeline.urgent
            && urgent.artifact != artifact.digest
        {
            blockers.push(Blocker {
                kind: BlockerKind::InFlightLimit,
                name: "urgent".into(),
                reason: format!("urgent mode: only {} may be in flight", urgent.artifact),
                clears_at: None,
            });
        }
        if let Some(limit) = plan.limits.max_artifacts_in_production
            && in_production.len() >= limit as usize
        {
            blockers.push(Blocker {
                kind: BlockerKind::InFlightLimit,
                name: "max_artifacts_in_production".into(),
                reason: format!(
                    "{} artifacts already in production (limit {limit})",
                    in_production.len()
                ),
                clears_at: None,
            });
        }
    }
    blockers
}

/// Whether `region`'s windows are open now, with the reason they are closed: from the cache
/// while its verdict holds, else worked out with the region's windows compiled once.
pub(super) fn window_verdict(
    context: &mut Context,
    pipeline: &str,
    windows: &TimeWindows,
    region: &str,
    zone: &str,
) -> Result<(Verdict, String), String> {
    let now = context.now;
    let cached = context.window_cache.get(pipeline).and_then(|regions| regions.get(region));
    if let Some(WindowCacheEntry { verdict: Some((computed, verdict, reason)), .. }) = cached
        && *computed <= now
        && verdict.holds_until.is_some_and(|until| now < until)
    {
        return Ok((verdict.clone(), reason.clone()));
    }
    let regions = context.window_cache.entry(pipeline.to_string()).or_default();
    let regions_compiled = (!regions.contains_key(region))
        .then(|| regions.values().next().map(|other| other.compiled.clone()))
        .flatten();
    let entry = match regions.entry(region.to_string()) {
        std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::btree_map::Entry::Vacant(entry) => {
            let tz = TimeZone::get(zone).map_err(|error| error.to_string())?;
            // Another region's compiled windows, moved to this region's zone, when there is one.
            let compiled = match regions_compiled {
                Some(other) => other.in_zone(tz),
                None => CompiledWindows::new(windows, tz).map_err(|error| error.to_string())?,
            };
            entry.insert(WindowCacheEntry { compiled, verdict: None })
        }
    };
    let verdict = entry.compiled.verdict(now).map_err(|error| error.to_string())?;
    let reason =
        verdict.closed_by.as_ref().map(|closure| format!("{closure} ({zone})")).unwrap_or_default();
    entry.verdict = Some((now, verdict.clone(), reason.clone()));
    Ok((verdict, reason))
}
