//! Scenario tests: each semantic of the engine written as data — a world, scripted events, and
//! the lines the timeline must contain, in order. The invariant checker runs in every one.

use gantry_sim::scenario;

/// Runs `scenario` and checks that every `expected` line is part of a timeline line, in order.
fn check(scenario: &str, expected: &[&str]) {
    let parsed = scenario::parse(scenario).expect("scenario parses");
    let report = scenario::run(&parsed).expect("scenario is valid");
    let timeline = report.timeline.join("\n");
    assert!(report.violations.is_empty(), "invariants broken: {:?}\n{timeline}", report.violations);
    let mut lines = report.timeline.iter();
    for want in expected {
        assert!(
            lines.any(|line| line.contains(want)),
            "timeline lacks (in order) {want:?}:\n{timeline}"
        );
    }
}

/// Checks that no timeline line contains `unwanted`.
fn check_never(scenario: &str, unwanted: &str) {
    let report = scenario::run(&scenario::parse(scenario).unwrap()).unwrap();
    let timeline = report.timeline.join("\n");
    assert!(!timeline.contains(unwanted), "timeline contains {unwanted:?}:\n{timeline}");
}

const ONE_REGION: &str =
    r#""regions": [{"name": "r1", "time_zone": "America/New_York", "zones": 2, "boxes": 10}]"#;

#[test]
fn a_bad_one_box_is_rolled_back_before_the_wave_continues() {
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "1d", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]]}}],
            "events": [{{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1, "bad": true}}]}}"#
    );
    check(
        &scenario,
        &[
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1",
            "api wave-1/one-box prod/r1/r1-az1: deployed api-1",
            "api prod/r1/r1-az1: rolling back to api-0: rollback alarm api-one-box is in ALARM in r1",
            "api wave-1: api-1 failed",
            "api prod/r1/r1-az1: rolled back to api-0",
        ],
    );
    check_never(&scenario, "wave-1/zone-1 prod/r1/r1-az1: deploying api-1");
}

/// Prints a scenario's timeline; for writing expectations.
#[allow(dead_code, reason = "used while writing a scenario")]
fn show(scenario: &str) {
    let report = scenario::run(&scenario::parse(scenario).unwrap()).unwrap();
    eprintln!("{}\nviolations: {:?}", report.timeline.join("\n"), report.violations);
}

const THREE_REGIONS: &str = r#""regions": [
    {"name": "r1", "time_zone": "America/New_York", "zones": 1, "boxes": 10},
    {"name": "r2", "time_zone": "Europe/Berlin", "zones": 1, "boxes": 10},
    {"name": "r3", "time_zone": "Asia/Tokyo", "zones": 1, "boxes": 10}]"#;

#[test]
fn roll_back_everywhere_reaches_a_later_artifact_in_an_earlier_wave() {
    // api-1 fails in wave 3 while api-2, built on top of it, bakes in wave 1: rolling api-1 back
    // everywhere also takes wave 1 off api-2, back to api-0, the newest artifact without api-1.
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "8h", {THREE_REGIONS},
            "pipelines": [{{"name": "api", "waves": [["r1"], ["r2"], ["r3"]],
                           "bake": {{"one_box": "10m", "wave": "30m"}}}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "2h", "event": "artifact", "pipeline": "api", "number": 2}},
              {{"at": "2h20m", "event": "alarm", "alarm": "api-high-severity", "region": "r3", "state": "ALARM"}},
              {{"at": "2h40m", "event": "command", "by": "oncall", "command": "roll_back_everywhere",
                "pipeline": "api", "artifact": "sha256:api-1", "reason": "elevated faults in r3"}}]}}"#
    );
    check(
        &scenario,
        &[
            "api wave-3/zone-1 prod/r3/r3-az1: deploying api-1",
            "api wave-1/zone-1 prod/r1/r1-az1: deploying api-2",
            "api prod/r3/r3-az1: rolling back to api-0: rollback alarm api-high-severity is in ALARM in r3",
            "api wave-3: api-1 failed",
            "oncall (op-1): recalled 2 artifact(s) from sha256:api-1 on",
            "api wave-1: api-2 failed: rolled back everywhere: elevated faults in r3",
        ],
    );
    check(&scenario, &["recalled", "api prod/r1/r1-az1: rolled back to api-0"]);
    check(&scenario, &["recalled", "api prod/r2/r2-az1: rolled back to api-0"]);
    check_never(&scenario, "api wave-2/one-box prod/r2/r2-az1: deploying api-2");
}

#[test]
fn a_team_aggregate_alarm_rolls_back_every_pipeline_of_the_team_in_its_region() {
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "2h", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]]}}, {{"name": "worker", "waves": [["r1"]]}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "1m", "event": "artifact", "pipeline": "worker", "number": 1}},
              {{"at": "20m", "event": "alarm", "alarm": "team-aggregate", "region": "r1", "state": "ALARM"}}]}}"#
    );
    check(
        &scenario,
        &[
            "api prod/r1/r1-az1: rolling back to api-0: rollback alarm team-aggregate is in ALARM in r1",
            "worker prod/r1/r1-az1: rolling back to worker-0: rollback alarm team-aggregate is in ALARM in r1",
        ],
    );
    check(&scenario, &["api prod/r1/r1-az1: rolled back to api-0"]);
    check(&scenario, &["worker prod/r1/r1-az1: rolled back to worker-0"]);
}

/// Business hours in the region's zone, no Friday afternoons after 15:00.
const BUSINESS_HOURS: &str = r#""time_windows": {"allow": [{"cron": "0 9 * * MON-FRI", "duration": "8h"}], "not_after": "15:00"}"#;

#[test]
fn a_deployment_that_would_start_friday_at_four_waits_for_monday() {
    // 2026-11-27 is a Friday; 21:00 UTC is 16:00 in New York.
    let scenario = format!(
        r#"{{"start": "2026-11-27T20:55:00Z", "until": "3d", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]], {BUSINESS_HOURS}}}],
            "events": [{{"at": "5m", "event": "artifact", "pipeline": "api", "number": 1}}]}}"#
    );
    check(
        &scenario,
        &[
            "2026-11-27 Fri 21:00:01 UTC api wave-1 prod/r1/r1-az1: api-1 blocked: TimeWindow: at or after 15:00:00 local time (America/New_York) (clears 2026-11-30 Mon 14:00:00 UTC)",
            "2026-11-30 Mon 14:00:00 UTC api wave-1/one-box prod/r1/r1-az1: deploying api-1",
        ],
    );
}

#[test]
fn an_expired_override_no_longer_lifts_its_blocker() {
    // The override lets the one-box start on Friday evening; it has expired when the one-box
    // has baked, so the first zone waits for Monday.
    let scenario = format!(
        r#"{{"start": "2026-11-27T20:55:00Z", "until": "3d", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]], {BUSINESS_HOURS}}}],
            "events": [
              {{"at": "5m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "10m", "event": "command", "by": "oncall", "command": "override", "pipeline": "api",
                "blocker": "time_window", "stage": "wave-1", "region": null, "reason": "ship the fix for INC-42",
                "expires_at": "2026-11-27T21:35:00Z"}}]}}"#
    );
    check(
        &scenario,
        &[
            "oncall (op-1): override of TimeWindow for wave-1 / every region until 2026-11-27T21:35:00Z: ship the fix for INC-42",
            "api prod/r1/r1-az1: override op-1 lifts TimeWindow",
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1",
            "2026-11-27 Fri 21:35:00 UTC api: override op-1 expired",
            "api wave-1 prod/r1/r1-az1: api-1 blocked: TimeWindow",
            "2026-11-30 Mon 14:00:00 UTC api wave-1/zone-1 prod/r1/r1-az1: deploying api-1",
        ],
    );
}

#[test]
fn urgent_mode_needs_enough_senior_approvals_and_then_shortens_bake() {
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "6h", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]],
                           "urgent": {{"approvers": ["pe-1", "pe-2", "pe-3"], "required_approvals": 2, "minimum_bake_percent": 25}}}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "2m", "event": "command", "by": "dev-1", "command": "urgent", "pipeline": "api",
                "artifact": "sha256:api-1", "approvers": ["pe-1", "dev-7"]}},
              {{"at": "3m", "event": "command", "by": "dev-1", "command": "urgent", "pipeline": "api",
                "artifact": "sha256:api-1", "approvers": ["pe-1", "pe-3"]}}]}}"#
    );
    check(
        &scenario,
        &[
            "dev-1 (op-1) refused: urgent mode needs 2 approvals",
            "api: urgent mode for api-1 approved by pe-1, pe-3",
            // A one-hour one-box bake cut to 25%.
            "api wave-1/one-box prod/r1/r1-az1: baking api-1 until 2026-11-24 Tue 14:",
            "api wave-1: api-1 passed",
            "api: urgent mode for api-1 ended",
        ],
    );
}

#[test]
fn manual_promotion_waits_for_a_person() {
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "12h", {ONE_REGION},
            "pipelines": [{{"name": "api", "gamma": true, "waves": [["r1"]], "manual": ["gamma"],
                           "bake": {{"one_box": "10m", "wave": "30m"}}}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "3h", "event": "command", "by": "qa-lead", "command": "approve", "pipeline": "api",
                "stage": "gamma", "artifact": "sha256:api-1"}}]}}"#
    );
    check(
        &scenario,
        &[
            "api gamma: api-1 awaits approval",
            "2026-11-24 Tue 17:00:01 UTC qa-lead (op-1): approved sha256:api-1 to leave gamma",
            "api gamma: api-1 passed",
            "api wave-1: api-1 entered",
            "api wave-1: api-1 passed",
        ],
    );
}

#[test]
fn a_stage_that_frees_up_takes_the_newest_artifact_and_supersedes_the_rest() {
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "6h", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]]}}],
            "events": [
              {{"at": "1m", "event": "command", "by": "oncall", "command": "hold", "pipeline": "api", "stage": null,
                "reason": "investigating INC-7"}},
              {{"at": "2m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "3m", "event": "artifact", "pipeline": "api", "number": 2}},
              {{"at": "4m", "event": "artifact", "pipeline": "api", "number": 3}},
              {{"at": "30m", "event": "command", "by": "oncall", "command": "release", "pipeline": "api", "stage": null}}]}}"#
    );
    check(
        &scenario,
        &[
            "api wave-1 prod/r1/r1-az1: api-1 blocked: ManualHold: held by oncall",
            "api wave-1: api-1 superseded by api-2",
            "api wave-1: api-2 superseded by api-3",
            "oncall (op-2): released the pipeline",
            "api wave-1/one-box prod/r1/r1-az1: deploying api-3",
        ],
    );
}

#[test]
fn a_controller_restart_mid_deployment_loses_nothing() {
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "8h", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]], "bake": {{"one_box": "10m", "wave": "30m"}}}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "20m", "event": "restart"}}]}}"#
    );
    check(
        &scenario,
        &["api wave-1/zone-1 prod/r1/r1-az1: deploying api-1", "api wave-1: api-1 passed"],
    );
}

#[test]
fn a_deployment_never_takes_capacity_below_the_floor() {
    // Four of ten boxes break: the deployment replaces them first (that costs no capacity), they
    // stay broken, and six healthy boxes are below the floor of seven (66% rounded up), so it
    // cannot take another box and fails rather than cut capacity.
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "3h", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]], "bake": {{"one_box": "10m"}}}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "10m", "event": "boxes_fail", "pipeline": "api", "environment": "prod", "region": "r1",
                "zone": "r1-az1", "count": 4}}]}}"#
    );
    check(
        &scenario,
        &[
            "api wave-1/zone-1 prod/r1/r1-az1: deploying api-1",
            "deploying api-1 failed: the capacity floor of 7 healthy of 10 boxes left no box to take",
            "api wave-1: api-1 failed",
        ],
    );
}

#[test]
fn a_floor_that_leaves_no_box_to_take_fails_before_deploying() {
    // CodeDeploy's example: 95% of 10 boxes rounds up to 10.
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "1h", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]],
                           "deployment": {{"minimum_healthy_hosts": {{"type": "FLEET_PERCENT", "value": 95}}}}}}],
            "events": [{{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}}]}}"#
    );
    check(
        &scenario,
        &[
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1 failed: HEALTH_CONSTRAINTS_INVALID: a floor of 10 healthy of 10 boxes leaves no box to deploy",
        ],
    );
}

#[test]
fn unreviewed_commits_never_reach_production_and_cannot_be_overridden() {
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "2h", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]]}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1, "unreviewed": true}},
              {{"at": "5m", "event": "command", "by": "oncall", "command": "override", "pipeline": "api",
                "blocker": "unreviewed", "stage": null, "region": null, "reason": "trust me",
                "expires_at": "2026-11-24T15:00:00Z"}}]}}"#
    );
    check(
        &scenario,
        &[
            "api wave-1 prod/r1/r1-az1: api-1 blocked: Unreviewed: commit api-commit-1",
            "oncall (op-1) refused: Unreviewed blockers cannot be overridden",
        ],
    );
    check_never(&scenario, "deploying api-1");
}

#[test]
fn the_shipped_scenario_files_run_clean() {
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    let mut ran = 0;
    for entry in std::fs::read_dir(directory).expect("the scenarios directory exists") {
        let path = entry.expect("readable").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let parsed =
            scenario::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let report =
            scenario::run(&parsed).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(report.violations.is_empty(), "{}: {:?}", path.display(), report.violations);
        assert!(!report.timeline.is_empty(), "{}: nothing happened", path.display());
        ran += 1;
    }
    assert!(ran > 0, "no scenario files in {directory}");
}

#[test]
fn regions_of_a_wave_each_go_at_their_own_pace_in_their_own_window() {
    // One wave of New York and Tokyo. At 14:00 UTC on a Tuesday New York's window is open and
    // Tokyo's (23:00 local) is closed: New York works through both of its zones without waiting
    // for Tokyo, which starts in its own morning. The next wave waits for both.
    let regions = r#""regions": [
        {"name": "r1", "time_zone": "America/New_York", "zones": 2, "boxes": 10},
        {"name": "r2", "time_zone": "Asia/Tokyo", "zones": 2, "boxes": 10},
        {"name": "r3", "time_zone": "Europe/Berlin", "zones": 1, "boxes": 10}]"#;
    let scenario = format!(
        r#"{{"start": "2026-11-24T13:55:00Z", "until": "3d", {regions},
            "pipelines": [{{"name": "api", "waves": [["r1", "r2"], ["r3"]],
                           "bake": {{"one_box": "10m", "zone": "10m", "wave": "30m"}},
                           {BUSINESS_HOURS}}}],
            "events": [{{"at": "5m", "event": "artifact", "pipeline": "api", "number": 1}}]}}"#
    );
    check(
        &scenario,
        &[
            "2026-11-24 Tue 14:00:01 UTC api wave-1/one-box prod/r1/r1-az1: deploying api-1",
            "2026-11-24 Tue 14:00:01 UTC api wave-1 prod/r2/r2-az1: api-1 blocked: TimeWindow",
            "api wave-1/zone-2 prod/r1/r1-az2: deploying api-1",
            "api wave-1/zone-2 prod/r1/r1-az2: api-1 baked",
            "2026-11-25 Wed 00:00:00 UTC api wave-1/one-box prod/r2/r2-az1: deploying api-1",
            "api wave-1/zone-2 prod/r2/r2-az2: api-1 baked",
            "api wave-1: api-1 passed",
            "api wave-2/one-box prod/r3/r3-az1: deploying api-1",
        ],
    );
}

#[test]
fn an_alarm_while_a_later_zone_bakes_rolls_back_the_regions_earlier_zones_too() {
    // Zone 1 of r1 baked api-1; the alarm fires while zone 2 bakes. Both zones run api-1, so
    // both go back to api-0, not only the zone deploying now.
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "6h", {ONE_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]],
                           "bake": {{"one_box": "10m", "zone": "10m", "wave": "30m"}}}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "50m", "event": "alarm", "alarm": "api-high-severity", "region": "r1", "state": "ALARM"}}]}}"#
    );
    check(
        &scenario,
        &[
            "api wave-1/zone-1 prod/r1/r1-az1: api-1 baked",
            "api wave-1/zone-2 prod/r1/r1-az2: baking api-1",
            "api prod/r1/r1-az1: rolling back to api-0: rollback alarm api-high-severity is in ALARM in r1",
            "api prod/r1/r1-az2: rolling back to api-0: rollback alarm api-high-severity is in ALARM in r1",
            "api wave-1: api-1 failed",
        ],
    );
    let report = scenario::run(&scenario::parse(&scenario).unwrap()).unwrap();
    let timeline = report.timeline.join("\n");
    for zone in ["r1-az1", "r1-az2"] {
        assert!(
            timeline.contains(&format!("api prod/r1/{zone}: rolled back to api-0")),
            "{zone} back on api-0:\n{timeline}"
        );
    }
}

/// How many timeline lines contain `wanted`.
fn count(scenario: &str, wanted: &str) -> usize {
    let report = scenario::run(&scenario::parse(scenario).unwrap()).unwrap();
    assert!(report.violations.is_empty(), "invariants broken: {:?}", report.violations);
    report.timeline.iter().filter(|line| line.contains(wanted)).count()
}

#[test]
fn each_step_bakes_on_data_points_gathered_since_its_own_deployment() {
    // The one box and zone 1 share a target: zone 1 must not start its bake credited with the
    // one box's traffic. 100 requests a minute; every bake needs 2,000 (twenty minutes' worth).
    let scenario = r#"{"start": "2026-11-24T14:00:00Z", "until": "4h",
        "regions": [{"name": "r1", "time_zone": "America/New_York", "zones": 1, "boxes": 10}],
        "pipelines": [{"name": "api", "waves": [["r1"]], "deployment": {"one_box_percent": 10},
                       "bake": {"one_box": "10m", "wave": "5m", "data_points": 2000}}],
        "events": [{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}]}"#;
    check(
        scenario,
        &[
            "api wave-1/one-box prod/r1/r1-az1: deployed api-1",
            "api wave-1/one-box prod/r1/r1-az1: bake of api-1 waits for evidence: prod/r1/r1-az1: requests has",
            "api wave-1/one-box prod/r1/r1-az1: api-1 baked",
            "api wave-1/zone-1 prod/r1/r1-az1: deployed api-1",
            "api wave-1/zone-1 prod/r1/r1-az1: bake of api-1 waits for evidence: prod/r1/r1-az1: requests has",
            "api wave-1/zone-1 prod/r1/r1-az1: api-1 baked",
        ],
    );
}

/// A region of three zones of four boxes: one box is 8% of the region, 25% of its zone.
const SMALL_REGION: &str =
    r#""regions": [{"name": "r1", "time_zone": "America/New_York", "zones": 3, "boxes": 4}]"#;

#[test]
fn a_one_box_is_measured_against_its_region_and_allowed_at_eight_percent() {
    let scenario = format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "3h", {SMALL_REGION},
            "pipelines": [{{"name": "api", "waves": [["r1"]], "bake": {{"one_box": "10m", "wave": "10m"}}}}],
            "events": [{{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}}]}}"#
    );
    check(
        &scenario,
        &[
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1",
            "api wave-1/one-box prod/r1/r1-az1: deployed api-1",
            "api wave-1: api-1 passed",
        ],
    );
    check_never(&scenario, "would take");
}

#[test]
fn a_one_box_that_would_take_a_quarter_of_its_region_is_refused() {
    let scenario = r#"{"start": "2026-11-24T14:00:00Z", "until": "1h",
        "regions": [{"name": "r1", "time_zone": "America/New_York", "zones": 1, "boxes": 4}],
        "pipelines": [{"name": "api", "waves": [["r1"]]}],
        "events": [{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}]}"#;
    check(
        scenario,
        &[
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1 failed: one box of 4 in its region would take 25.0% of its traffic, more than one_box_percent 10%",
            "api wave-1: api-1 failed",
        ],
    );
}

/// Three boxes with a floor of two: rolled back by hand after api-2 reached all of them.
fn hand_rollback(broken: u32, batch: &str) -> String {
    format!(
        r#"{{"start": "2026-11-24T14:00:00Z", "until": "6h",
            "regions": [{{"name": "r1", "time_zone": "America/New_York", "zones": 1, "boxes": 3}}],
            "pipelines": [{{"name": "api", "waves": [["r1"]],
                           "deployment": {{"one_box_percent": 50, "rollback_batch_size": {batch}}},
                           "bake": {{"one_box": "10m", "wave": "10m"}}}}],
            "events": [
              {{"at": "1m", "event": "artifact", "pipeline": "api", "number": 1}},
              {{"at": "1h", "event": "artifact", "pipeline": "api", "number": 2}},
              {{"at": "2h", "event": "boxes_fail", "pipeline": "api", "environment": "prod",
                "region": "r1", "zone": "r1-az1", "count": {broken}}},
              {{"at": "2h5m", "event": "command", "by": "oncall", "command": "roll_back_target",
                "pipeline": "api", "target": {{"environment": "prod", "region": "r1", "zone": "r1-az1"}},
                "reason": "errors"}}]}}"#
    )
}

#[test]
fn a_rollback_that_cannot_make_progress_is_reported_once_with_a_page() {
    // One broken box and the other two at the floor: the rollback can never finish.
    let scenario = hand_rollback(1, r#"{"type": "HOST_COUNT", "value": 1}"#);
    check(
        &scenario,
        &[
            "api wave-1: api-2 passed",
            "oncall (op-1): rolling prod/r1/r1-az1 back from sha256:api-2 to sha256:api-1",
            "api prod/r1/r1-az1: rolling back to api-1",
            "api prod/r1/r1-az1: rollback stuck: rollback to sha256:api-1 cannot make progress: the capacity floor of 2 healthy of 3 boxes binds (2 healthy); 2 healthy box(es) wait for capacity: prod-r1-az1-01, prod-r1-az1-02; 1 box(es) failed their rollback and rest: prod-r1-az1-00",
            "page: api prod/r1/r1-az1: rollback to sha256:api-1 cannot make progress",
        ],
    );
    assert_eq!(count(&scenario, "rollback stuck"), 1, "reported once in four hours");
    assert_eq!(count(&scenario, "page: "), 1);
}

#[test]
fn a_slow_rollback_that_makes_progress_is_not_reported() {
    // One box at a time, every box healthy: slow, never stuck.
    let scenario = hand_rollback(0, r#"{"type": "HOST_COUNT", "value": 1}"#);
    check(
        &scenario,
        &["api prod/r1/r1-az1: rolling back to api-1", "api prod/r1/r1-az1: rolled back to api-1"],
    );
    check_never(&scenario, "stuck");
    check_never(&scenario, "page: ");
}
