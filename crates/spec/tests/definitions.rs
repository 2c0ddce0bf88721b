//! Pipeline definitions as users write them, good and bad: each case writes files into a fresh
//! directory beside a small topology, loads `pipeline.yaml` (or the named file) and compares
//! what Gantry reports (errors with their locations, or facts of the plan) with the expectation.

use std::path::Path;

use gantry_spec::Definition;

/// Three regions of rising traffic, two zones each; gamma in two regions.
const TOPOLOGY: &str = "\
regions:
  - {name: small-1, traffic: 10, time_zone: Europe/Dublin, zones: [{name: s1a}, {name: s1b}]}
  - {name: mid-1, traffic: 50, time_zone: Asia/Tokyo, zones: [{name: m1a}, {name: m1b, cells: [m1b-c1]}]}
  - {name: big-1, traffic: 99, time_zone: America/New_York, zones: [{name: b1a, cells: [b1a-c1, b1a-c2]}, {name: b1b, cells: [b1b-c1]}]}
environments:
  - {name: alpha, regions: [mid-1]}
  - {name: gamma, regions: [mid-1, big-1]}
";

/// A complete, valid organisation default that test pipelines extend.
const ORG: &str = "\
abstract: true
topology: topology.yaml
team: platform
kind: code
sources: [{repository: /srv/git/service}]
build: {command: make, outputs: [out/service]}
preprod:
  alpha: {tests: {integration: {kind: integration, command: ./it.sh}}}
  gamma: {one_box: true}
waves:
  - {lowest_traffic: 1}
  - {highest_traffic: 1}
  - {rest: true}
bake:
  one_box: {duration: 1h, data_points: {requests: 100}}
  wave: {duration: 4h}
alarms:
  definitions:
    Faults: {metric: {metric: faults, divide_by: requests, statistic: Average, period: 1m, evaluation_periods: 3, comparison: GreaterThanThreshold, threshold: 0.01}}
    Latency: {metric: {metric: latency, statistic: p99, period: 1m, evaluation_periods: 5, datapoints_to_alarm: 3, comparison: GreaterThanThreshold, threshold: 250}}
    Service_High_Severity: {composite: 'ALARM(Faults) OR ALARM(\"Latency\")'}
  rollback: [Service_High_Severity]
time_windows:
  allow: [{cron: '* 9-14 * * MON-THU'}]
  exclude_weekdays: [friday, saturday, sunday]
";

struct Case {
    files: Vec<(&'static str, String)>,
    main: &'static str,
}

fn case(pipeline: &str) -> Case {
    Case {
        files: vec![
            ("topology.yaml", TOPOLOGY.to_string()),
            ("org.yaml", ORG.to_string()),
            ("pipeline.yaml", pipeline.to_string()),
        ],
        main: "pipeline.yaml",
    }
}

impl Case {
    fn with(mut self, name: &'static str, text: &str) -> Case {
        self.files.retain(|(existing, _)| *existing != name);
        self.files.push((name, text.to_string()));
        self
    }

    fn main(mut self, name: &'static str) -> Case {
        self.main = name;
        self
    }

    /// Loads the case; returns the diagnostics with the directory written as `$DIR`, or "ok".
    fn run(&self) -> (String, Option<gantry_spec::Loaded>) {
        let directory = tempfile::tempdir().unwrap();
        for (name, text) in &self.files {
            let path = directory.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let result = gantry_spec::load(&directory.path().join(self.main));
        let root = directory.path().display().to_string();
        match result {
            Ok(loaded) => ("ok".to_string(), Some(loaded)),
            Err(diagnostics) => (diagnostics.to_string().replace(&root, "$DIR"), None),
        }
    }
}

/// Asserts that loading reports exactly `expected` (or "ok").
fn check(case: Case, expected: &str) {
    let (got, _) = case.run();
    assert_eq!(got.trim(), expected.trim(), "\n--- got ---\n{got}\n");
}

fn load(case: Case) -> gantry_spec::Loaded {
    match case.run() {
        (_, Some(loaded)) => loaded,
        (errors, None) => panic!("expected the case to load, got:\n{errors}"),
    }
}

const MINIMAL: &str = "extends: org.yaml\npipeline: svc-code\nservice: svc\n";

#[test]
fn a_minimal_child_inherits_everything() {
    check(case(MINIMAL), "ok");
}

#[test]
fn unknown_fields_are_all_reported_with_a_suggestion() {
    check(
        case(
            "extends: org.yaml\npipeline: svc-code\nservice: svc\nbakee: {}\ndeployment: {batch: 5}\n",
        ),
        "\
$DIR/pipeline.yaml:4:1: error: unknown field `bakee`
  hint: did you mean `bake`?
$DIR/pipeline.yaml:5:14: error: unknown field `batch`
  hint: did you mean `batch_size`?",
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    check(
        case(&format!("{MINIMAL}waves: 3\n")),
        "$DIR/pipeline.yaml:4:8: error: expected a list, found the integer 3",
    );
    check(
        case(&format!("{MINIMAL}limits: {{max_artifacts_in_production: many}}\n")),
        "$DIR/pipeline.yaml:4:39: error: expected an integer, found the string `many`",
    );
}

#[test]
fn unknown_enum_values_list_the_choices() {
    check(
        case("extends: org.yaml\npipeline: svc-code\nservice: svc\nkind: cod\n"),
        "\
$DIR/pipeline.yaml:4:7: error: unknown value `cod`
  hint: did you mean `code`? Expected one of `code`, `config`, `infra`, `os`, `tools`",
    );
}

#[test]
fn missing_required_fields_point_at_the_mapping() {
    check(
        case("pipeline: lonely\nservice: svc\n"),
        "$DIR/pipeline.yaml:1:1: error: missing field `team`",
    );
}

#[test]
fn bad_durations_are_refused_where_written() {
    check(
        case(&format!("{MINIMAL}bake: {{wave: {{duration: 4hours}}}}\n")),
        "$DIR/pipeline.yaml:4:25: error: invalid duration \"4hours\": unknown unit; use d, h, m or s (write e.g. `90s`, `30m`, `1h30m` or `2d`)",
    );
}

#[test]
fn unknown_and_doubled_regions_and_coverage() {
    check(
        case(&format!("{MINIMAL}waves:\n  - {{regions: [smal-1]}}\n  - {{regions: [mid-1, mid-1]}}\n")),
        "\
$DIR/pipeline.yaml:5:16: error: unknown region `smal-1`
  hint: did you mean `small-1`? Regions come from the topology file
$DIR/pipeline.yaml:6:23: error: region `mid-1` is listed twice in wave 2
  hint: a region belongs to exactly one wave
$DIR/pipeline.yaml:5:3: error: the waves do not cover the topology: no wave deploys `small-1`, `big-1`
  hint: add `rest: true` as the last wave, list the regions in a wave, or add them to `exclude_regions`",
    );
    check(
        case(&format!(
            "{MINIMAL}waves:\n  - {{regions: [mid-1]}}\n  - {{regions: [big-1, mid-1]}}\n  - {{rest: true}}\n"
        )),
        "\
$DIR/pipeline.yaml:6:23: error: region `mid-1` is in wave 1 and wave 2
  hint: a region belongs to exactly one wave",
    );
}

#[test]
fn wave_selectors_must_be_satisfiable() {
    check(
        case(&format!("{MINIMAL}waves:\n  - {{lowest_traffic: 1}}\n  - {{count: 3}}\n")),
        "\
$DIR/pipeline.yaml:6:13: error: wave 2 asks for 3 regions but only 2 remain
  hint: earlier waves and explicit region lists have taken the others; ask for fewer or use `up_to`",
    );
    check(
        case(&format!("{MINIMAL}waves:\n  - {{rest: true}}\n  - {{count: 1, up_to: 2}}\n")),
        "\
$DIR/pipeline.yaml:5:12: error: only the last wave may take the rest of the regions
$DIR/pipeline.yaml:6:23: error: wave 2 sets both `count` and `up_to`; a wave has one selector
$DIR/pipeline.yaml:6:13: error: wave 2 asks for 1 region but none remain
  hint: earlier waves and explicit region lists have taken the others; ask for fewer or use `up_to`",
    );
}

#[test]
fn cron_time_zone_and_window_errors() {
    check(
        case(&format!(
            "{MINIMAL}time_windows:\n  allow: [{{cron: '* 25 * * MON', time_zone: Mars/Olympus}}, {{cron: '0 9 * *'}}]\n  not_before: '15:00'\n  not_after: '09:00'\n"
        )),
        "\
$DIR/pipeline.yaml:5:18: error: invalid cron `* 25 * * MON`: Component error: Number out of bounds.
  hint: five fields: minute hour day-of-month month day-of-week, e.g. `* 9-14 * * MON-THU`
$DIR/pipeline.yaml:5:45: error: unknown time zone `Mars/Olympus`
  hint: use an IANA name such as `America/New_York`, or leave it out to use each region's zone
$DIR/pipeline.yaml:5:67: error: cron `0 9 * *` has 4 fields; allow-windows use five
  hint: five fields: minute hour day-of-month month day-of-week, e.g. `* 9-14 * * MON-THU`
$DIR/pipeline.yaml:7:14: error: not_after (09:00:00) is not later than not_before (15:00:00)",
    );
}

#[test]
fn alarm_references_and_composite_syntax() {
    check(
        case(&format!(
            "{MINIMAL}alarms:\n  definitions:\n    Broken: {{composite: 'ALARM(Faults) AND (OK(Latency)'}}\n    Dangling: {{composite: 'ALARM(Nowhere)'}}\n  rollback+: [Servce_High_Severity]\n"
        )),
        "\
$DIR/pipeline.yaml:6:25: error: composite rule of `Broken`: column 31: expected `AND`, `OR` or `)` to close `(` opened at column 19, found end of rule
$DIR/pipeline.yaml:7:27: error: unknown alarm `Nowhere`
  hint: composite `Dangling` refers to it; define it under `alarms.definitions`
$DIR/pipeline.yaml:8:15: error: unknown alarm `Servce_High_Severity`
  hint: did you mean `Service_High_Severity`?",
    );
}

#[test]
fn composite_cycles_are_refused() {
    check(
        case(&format!(
            "{MINIMAL}alarms:\n  definitions:\n    A: {{composite: 'ALARM(B)'}}\n    B: {{composite: 'NOT ALARM(A)'}}\n"
        )),
        "$DIR/pipeline.yaml:6:8: error: composite alarms form a cycle: A → B → A",
    );
}

#[test]
fn unknown_stages_are_unknown_fields() {
    check(
        case(&format!("{MINIMAL}preprod: {{delta: {{}}}}\n")),
        "\
$DIR/pipeline.yaml:4:11: error: unknown field `delta`
  hint: did you mean `beta`?",
    );
}

#[test]
fn a_stage_needs_its_environment_in_the_topology() {
    check(
        case(&format!("{MINIMAL}preprod: {{zeta: {{}}}}\n")),
        "\
$DIR/pipeline.yaml:4:17: error: stage `zeta` has no environment in the topology
  hint: add `{name: zeta, regions: [...]}` to the topology's `environments`",
    );
}

#[test]
fn inheritance_cycles_and_missing_parents() {
    check(
        case("extends: b.yaml\n").with("b.yaml", "extends: pipeline.yaml\n"),
        "\
$DIR/b.yaml:1:10: error: inheritance cycle: $DIR/pipeline.yaml → $DIR/b.yaml → $DIR/pipeline.yaml
  hint: remove one `extends` so the chain ends at a file without a parent",
    );
    check(
        case("extends: teams/nowhere.yaml\npipeline: x\n"),
        "\
$DIR/pipeline.yaml:1:10: error: cannot load the parent `$DIR/teams/nowhere.yaml`: cannot read: No such file or directory (os error 2)
  hint: `extends` is a path relative to the file that writes it",
    );
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    check(
        case("pipeline: [unclosed\n"),
        "$DIR/pipeline.yaml:2:1: error: invalid YAML: while parsing a flow sequence, expected ',' or ']'",
    );
}

#[test]
fn topology_errors_are_reported_against_the_topology() {
    check(
        case(MINIMAL).with(
            "topology.yaml",
            "regions:\n  - {name: a, traffic: 1, time_zone: Nowhere/City, zones: [{name: z}]}\n  - {name: a, traffic: 2, time_zone: UTC, zones: [{name: z}]}\n",
        ),
        "\
$DIR/topology.yaml:2:38: error: unknown time zone `Nowhere/City`
  hint: use an IANA name such as `Europe/Dublin`
$DIR/topology.yaml:3:12: error: region `a` is listed twice
$DIR/topology.yaml:3:58: error: availability zone `z` is listed twice",
    );
}

#[test]
fn jsonnet_errors_name_the_field_path() {
    check(
        case("").with(
            "pipeline.jsonnet",
            "{ extends: 'org.yaml', pipeline: 'svc-code', service: 'svc',\n  waves: [{ regions: [r] } for r in ['small-1', 'nowhere']] + [{ rest: true }] }\n",
        )
        .main("pipeline.jsonnet"),
        "\
$DIR/pipeline.jsonnet: field `waves[1].regions[0]`: error: unknown region `nowhere`
  hint: regions come from the topology file",
    );
    check(
        case("").with("pipeline.jsonnet", "{ pipeline: 'x', waves: [ }\n").main("pipeline.jsonnet"),
        "$DIR/pipeline.jsonnet:1:27: error: Jsonnet: syntax error: expected `]` or expression, found `}`",
    );
}

#[test]
fn abstract_defaults_have_no_plan() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("org.yaml"), ORG).unwrap();
    std::fs::write(directory.path().join("topology.yaml"), TOPOLOGY).unwrap();
    let definition = gantry_spec::load_definition(&directory.path().join("org.yaml")).unwrap();
    assert!(matches!(definition, Definition::Abstract { .. }));
}

#[test]
fn a_child_that_overrides_one_field_changes_only_that_field() {
    let base = load(case(MINIMAL));
    let child = load(case(&format!("{MINIMAL}bake: {{wave: {{duration: 3h}}}}\n")));
    let mut expected = base.spec.clone();
    expected.topology = child.spec.topology.clone(); // each case has its own directory
    expected.bake.wave.duration = "3h".parse().unwrap();
    assert_eq!(child.spec, expected);
    // The one-box bake and its data points, set in the same parent mapping, are untouched.
    assert_eq!(child.spec.bake.one_box, base.spec.bake.one_box);
}

#[test]
fn list_operators_and_null_removal() {
    let loaded = load(case(&format!(
        "{MINIMAL}preprod:\n  alpha: {{tests: {{integration: null}}}}\n  gamma: null\nalarms:\n  rollback+: [Latency]\n  rollback-: [Service_High_Severity]\n"
    )));
    assert_eq!(loaded.spec.alarms.rollback, vec!["Latency".to_string()]);
    assert!(loaded.spec.preprod.alpha.as_ref().unwrap().tests.is_empty());
    assert!(loaded.spec.preprod.gamma.is_none());
    check(
        case(&format!("{MINIMAL}alarms:\n  rollback-: [Nope]\n")),
        "$DIR/pipeline.yaml:5:15: error: cannot remove `Nope` from `rollback`: the inherited list does not contain it",
    );
    check(
        case(&format!("{MINIMAL}alarms:\n  rollback: []\n  rollback+: [Latency]\n")),
        "\
$DIR/pipeline.yaml:6:3: error: `rollback+` and `rollback` in the same mapping
  hint: write either `rollback` to replace the inherited list or `rollback+` to edit it",
    );
}

/// The shape of an expanded plan: stage, then each step with its targets.
fn shape(plan: &gantry_model::Plan) -> String {
    let mut text = String::new();
    for stage in &plan.stages {
        for step in &stage.steps {
            let targets: Vec<String> = step.targets.iter().map(ToString::to_string).collect();
            text.push_str(&format!(
                "{} [{}] bake {}\n",
                step.name,
                targets.join(" "),
                step.bake.duration
            ));
        }
    }
    text
}

#[test]
fn waves_expand_one_box_first_then_one_zone_per_region_per_step() {
    let loaded = load(case(&format!(
        "{MINIMAL}bake: {{first_zone: {{duration: 30m}}, wave: {{duration: 4h}}}}\nwaves:\n  - {{lowest_traffic: 1, bake: {{duration: 12h}}}}\n  - {{highest_traffic: 1, granularity: cell}}\n  - {{rest: true}}\n"
    )));
    assert_eq!(
        shape(&loaded.plan),
        "\
alpha/environment [alpha/mid-1] bake 0s
gamma/one-box [gamma/mid-1 gamma/big-1] bake 1h
gamma/environment [gamma/mid-1 gamma/big-1] bake 0s
wave-1/one-box [prod/small-1/s1a] bake 1h
wave-1/zone-1 [prod/small-1/s1a] bake 30m
wave-1/zone-2 [prod/small-1/s1b] bake 12h
wave-2/one-box [prod/big-1/b1a/b1a-c1] bake 1h
wave-2/cell-1 [prod/big-1/b1a/b1a-c1] bake 30m
wave-2/cell-2 [prod/big-1/b1a/b1a-c2] bake 0s
wave-2/cell-3 [prod/big-1/b1b/b1b-c1] bake 4h
wave-3/one-box [prod/mid-1/m1a] bake 1h
wave-3/zone-1 [prod/mid-1/m1a] bake 30m
wave-3/zone-2 [prod/mid-1/m1b] bake 4h
"
    );
    check(
        case(&format!(
            "{MINIMAL}waves:\n  - {{lowest_traffic: 1, granularity: cell}}\n  - {{rest: true}}\n"
        )),
        "$DIR/pipeline.yaml:5:38: error: wave 1 deploys cell by cell, but region `small-1` has no cells in the topology",
    );
}

#[test]
fn explicit_regions_are_reserved_before_selectors_choose() {
    let loaded = load(case(&format!(
        "{MINIMAL}waves:\n  - {{lowest_traffic: 1}}\n  - {{regions: [small-1]}}\n  - {{rest: true}}\n"
    )));
    let regions: Vec<Vec<&str>> = loaded
        .plan
        .production_stages()
        .map(|stage| stage.steps[0].targets.iter().map(|target| target.region.as_str()).collect())
        .collect();
    assert_eq!(regions, vec![vec!["mid-1"], vec!["small-1"], vec!["big-1"]]);
}

#[test]
fn rollback_alarms_and_one_box_alarms_reach_every_step() {
    let loaded = load(case(&format!("{MINIMAL}alarms: {{one_box_rollback: [Latency]}}\n")));
    for stage in loaded.plan.production_stages() {
        for step in &stage.steps {
            let expected: &[&str] = if step.kind == gantry_model::StepKind::OneBox {
                &["Service_High_Severity", "Latency"]
            } else {
                &["Service_High_Severity"]
            };
            assert_eq!(step.rollback_alarms, expected, "step {}", step.name);
        }
    }
}

#[test]
fn holidays_from_calendars_join_the_dates() {
    let calendar = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Day off\r\nDTSTART;VALUE=DATE:20261225\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let loaded = load(
        case(&format!(
            "{MINIMAL}time_windows:\n  holidays: {{dates: [2026-12-31], calendars: [cal/h.ics]}}\n"
        ))
        .with("cal/h.ics", calendar),
    );
    let dates: Vec<String> =
        loaded.plan.time_windows.holidays.dates.iter().map(ToString::to_string).collect();
    assert_eq!(dates, ["2026-12-25", "2026-12-31"]);
    check(
        case(&format!("{MINIMAL}time_windows:\n  holidays: {{calendars: [missing.ics]}}\n")),
        "$DIR/pipeline.yaml:5:26: error: cannot read the holiday calendar `$DIR/missing.ics`: No such file or directory (os error 2)",
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let (errors, _) = case(&format!(
        "{MINIMAL}deployment: {{one_box_percent: 0, minimum_healthy_hosts: {{type: FLEET_PERCENT, value: 150}}}}\nurgent: {{approvers: [ana], required_approvals: 2}}\nlimits: {{max_artifacts_in_production: 0}}\n"
    ))
    .run();
    assert_eq!(errors.lines().filter(|line| line.contains(": error: ")).count(), 4, "{errors}");
}

#[test]
fn examples_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/services");
    let mut count = 0;
    for service in std::fs::read_dir(&root).unwrap() {
        for file in std::fs::read_dir(service.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if let Err(errors) = gantry_spec::load(&path) {
                panic!("{}:\n{errors}", path.display());
            }
            count += 1;
        }
    }
    assert!(count >= 9, "the examples hold at least three services with three pipelines each");
}

/// Arbitrary text never panics the loader: it loads or it is refused with diagnostics.
#[test]
fn arbitrary_text_never_panics() {
    use proptest::prelude::*;
    let topology: gantry_model::Topology = {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("t.yaml"), TOPOLOGY).unwrap();
        gantry_spec::load_topology_file(&directory.path().join("t.yaml")).unwrap()
    };
    let seed = format!("{}\npipeline: x\nservice: y\n", ORG.replace("abstract: true\n", ""));
    let config =
        ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(cut in 0..seed.len(), noise in "[ -~\n\t]{0,40}", tail in 0..seed.len())| {
        // Splice printable noise into a valid definition, so most cases get far into the loader.
        let start = seed.floor_char_boundary(cut.min(tail));
        let end = seed.floor_char_boundary(cut.max(tail));
        let text = format!("{}{noise}{}", &seed[..start], &seed[end..]);
        let _ = gantry_spec::load_text(&text, Path::new("/nonexistent/fuzz.yaml"), Some(&topology));
    });
}

#[test]
fn excluded_zones_are_skipped_and_unknown_zones_refused() {
    let loaded = load(case(&format!("{MINIMAL}exclude_zones: [s1a]\n")));
    let wave_1: Vec<String> = loaded.plan.stages[2]
        .steps
        .iter()
        .map(|step| format!("{} {}", step.name, step.targets[0]))
        .collect();
    assert_eq!(wave_1, ["wave-1/one-box prod/small-1/s1b", "wave-1/zone-1 prod/small-1/s1b"]);
    check(
        case(&format!("{MINIMAL}exclude_zones: [s1c]\n")),
        "\
$DIR/pipeline.yaml:4:17: error: unknown availability zone `s1c`
  hint: did you mean `s1a`? Zones come from the topology file",
    );
}

#[test]
fn judge_and_anomaly_alarms_can_roll_back() {
    let loaded = load(case(&format!(
        "{MINIMAL}alarms:
  definitions:
    OneBox_Judge: {{judge: {{metric: latency, canary: {{role: one-box}}, baseline: {{role: fleet}}, direction: increase}}}}
    OneBox_Anomaly: {{anomaly: {{check: above_baseline, metric: latency, labels: {{role: one-box}}, baseline: {{fleet: {{role: fleet}}}}}}}}
    Requests_To_Zero: {{anomaly: {{check: requests_to_zero, metric: requests, baseline: {{before: 30}}}}}}
    OneBox_Rollback: {{composite: 'ALARM(OneBox_Judge) OR ALARM(OneBox_Anomaly)'}}
  rollback+: [Requests_To_Zero]
  one_box_rollback: [OneBox_Rollback]
"
    )));
    assert_eq!(loaded.spec.alarms.rollback, ["Service_High_Severity", "Requests_To_Zero"]);
    let judge = &loaded.spec.alarms.definitions["OneBox_Judge"];
    let gantry_model::pipeline::AlarmDefinition::Judge(judge) = judge else {
        panic!("expected a judge, got {judge:?}")
    };
    // Kayenta's defaults.
    assert_eq!(
        (judge.confidence, judge.tolerance, judge.min_points, judge.window.as_seconds()),
        (0.98, 0.25, 50, 3600)
    );
}

#[test]
fn judge_and_anomaly_alarm_ranges_are_located() {
    check(
        case(&format!(
            "{MINIMAL}alarms:
  definitions:
    Judge: {{judge: {{metric: latency, canary: {{role: one-box}}, baseline: {{role: one-box}}, confidence: 1.5, tolerance: -1, min_points: 2}}}}
    Unscoped: {{judge: {{metric: latency, canary: {{}}, baseline: {{role: fleet}}, window: 2d}}}}
    Anomaly: {{anomaly: {{check: above_baseline, metric: latency, baseline: {{before: 5}}, factor: 0.9}}}}
    Fleet: {{anomaly: {{check: requests_to_zero, metric: requests, baseline: {{fleet: {{}}}}, min_baseline_points: 1}}}}
"
        )),
        "\
$DIR/pipeline.yaml:8:75: error: the baseline is 5 periods but `min_baseline_points` is 10: the alarm could never judge; use at least that many periods
$DIR/pipeline.yaml:8:96: error: `factor` is 0.9; it must be a number of at least 1
$DIR/pipeline.yaml:9:110: error: `min_baseline_points` is 1; at least 3 are needed for a median and its spread
$DIR/pipeline.yaml:9:76: error: the fleet baseline selects every series: give its labels, e.g. `{fleet: {role: fleet}}`
$DIR/pipeline.yaml:6:73: error: the baseline selects the same series as the canary: the judge would compare the canary with itself
$DIR/pipeline.yaml:6:102: error: `confidence` is 1.5; it must be between 0 and 1, e.g. 0.98
$DIR/pipeline.yaml:6:118: error: `tolerance` is -1; it must be a number of at least 0, e.g. 0.25
$DIR/pipeline.yaml:6:134: error: `min_points` is 2; it must be between 3 and 2000 (Kayenta asks for 50)
$DIR/pipeline.yaml:7:49: error: the canary selects every series: give its labels, e.g. `{role: one-box}`
$DIR/pipeline.yaml:7:86: error: `window` is 172800s; it must be between 1s and 86400s (one day)",
    );
}

#[test]
fn judge_and_anomaly_alarm_fields_are_checked_like_any_other() {
    check(
        case(&format!(
            "{MINIMAL}alarms:
  definitions:
    Judge: {{judge: {{metric: latency, canary: {{role: one-box}}, baseline: {{role: fleet}}, confidance: 0.9, direction: up}}}}
"
        )),
        "\
$DIR/pipeline.yaml:6:88: error: unknown field `confidance`
  hint: did you mean `confidence`?
$DIR/pipeline.yaml:6:116: error: unknown value `up`
  hint: expected one of `increase`, `decrease`, `either`",
    );
    check(
        case(&format!(
            "{MINIMAL}alarms:
  definitions:
    Anomaly: {{anomaly: {{check: drop, metric: requests, baseline: {{before: 30}}}}}}
"
        )),
        "\
$DIR/pipeline.yaml:6:32: error: unknown value `drop`
  hint: expected one of `requests_to_zero`, `above_baseline`",
    );
}
