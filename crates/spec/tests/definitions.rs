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
    files: Vec<(&'static str, Vec<u8>)>,
    main: &'static str,
}

fn case(pipeline: &str) -> Case {
    Case {
        files: vec![
            ("topology.yaml", TOPOLOGY.into()),
            ("org.yaml", ORG.into()),
            ("pipeline.yaml", pipeline.into()),
        ],
        main: "pipeline.yaml",
    }
}

impl Case {
    fn with(self, name: &'static str, text: &str) -> Case {
        self.with_bytes(name, text.as_bytes())
    }

    fn with_bytes(mut self, name: &'static str, bytes: &[u8]) -> Case {
        self.files.retain(|(existing, _)| *existing != name);
        self.files.push((name, bytes.to_vec()));
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
        "$DIR/pipeline.yaml:4:39: error: expected a whole number, found the string `many`",
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
$DIR/pipeline.yaml:5:18: error: invalid cron `* 25 * * MON`: field 2 (hour) `25` is not valid: hours are 0 to 23, as a value, a range `a-b`, a list `a,b`, a step `*/n` or `*`
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
$DIR/topology.yaml:3:58: error: availability zone `z` is listed twice in region `a`
  hint: zone names are unique across the topology",
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
wave-2/cell-2 [prod/big-1/b1a/b1a-c2] bake 1h
wave-2/cell-3 [prod/big-1/b1b/b1b-c1] bake 4h
wave-3/one-box [prod/mid-1/m1a] bake 1h
wave-3/zone-1 [prod/mid-1/m1a] bake 30m
wave-3/zone-2 [prod/mid-1/m1b] bake 4h
"
    );
}

#[test]
fn a_cell_wave_deploys_a_zone_without_cells_as_one_unit() {
    // mid-1's zone m1a has no cells, m1b has one; small-1 has none at all.
    let loaded = load(case(&format!(
        "{MINIMAL}waves:\n  - {{regions: [mid-1, small-1], granularity: cell}}\n  - {{rest: true}}\n"
    )));
    let wave = &loaded.plan.stages[2];
    let steps: Vec<String> = wave
        .steps
        .iter()
        .map(|step| {
            let targets: Vec<String> = step.targets.iter().map(ToString::to_string).collect();
            format!("{} [{}]", step.name, targets.join(" "))
        })
        .collect();
    assert_eq!(
        steps,
        [
            "wave-1/one-box [prod/mid-1/m1a prod/small-1/s1a]",
            "wave-1/cell-1 [prod/mid-1/m1a prod/small-1/s1a]",
            "wave-1/cell-2 [prod/mid-1/m1b/m1b-c1 prod/small-1/s1b]",
        ]
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

/// Plans that used to pass `validate` and were silently wrong.
#[test]
fn a_wave_with_no_regions_is_refused() {
    check(
        case(&format!("{MINIMAL}waves:\n  - {{regions: []}}\n  - {{rest: true}}\n")),
        "\
$DIR/pipeline.yaml:5:15: error: wave 1 lists no regions, so its steps would deploy nothing
  hint: name at least one region, or remove the wave",
    );
}

#[test]
fn every_production_bake_needs_a_duration_and_data_points() {
    // A zero production bake, and data points removed with `null`.
    check(
        case(&format!("{MINIMAL}bake: {{one_box: {{duration: 0s}}, wave: {{data_points: null}}}}\n")),
        "\
$DIR/pipeline.yaml:4:28: error: production step `wave-1/one-box`, `wave-2/one-box`, `wave-3/one-box` bakes for 0s; every production bake needs a duration above zero
  hint: the organisation's policy sets the hours, e.g. `duration: 1h`
$DIR/pipeline.yaml:4:39: error: production step `wave-1/zone-2`, `wave-2/zone-2`, `wave-3/zone-2` bakes without a data-point requirement; every production bake needs at least one
  hint: e.g. `data_points: {requests: 100}`: the bake waits for that many requests in the target's scope",
    );
    // A wave's own bake is blamed where the wave writes it.
    check(
        case(&format!(
            "{MINIMAL}waves:\n  - {{lowest_traffic: 1, bake: {{duration: 0s}}}}\n  - {{rest: true}}\n"
        )),
        "\
$DIR/pipeline.yaml:5:42: error: production step `wave-1/zone-2` bakes for 0s; every production bake needs a duration above zero
  hint: the organisation's policy sets the hours, e.g. `duration: 1h`",
    );
    // Pre-production stages may bake for nothing.
    check(case(&format!("{MINIMAL}preprod:\n  alpha: {{bake: {{duration: 0s}}}}\n")), "ok");
}

#[test]
fn the_model_defaults_satisfy_the_bake_rule() {
    let org_without_bakes = ORG.replace(
        "bake:\n  one_box: {duration: 1h, data_points: {requests: 100}}\n  wave: {duration: 4h}\n",
        "",
    );
    assert!(!org_without_bakes.contains("bake:"));
    let loaded = load(case(MINIMAL).with("org.yaml", &org_without_bakes));
    for step in loaded.plan.production_stages().flat_map(|stage| &stage.steps) {
        assert!(step.bake.duration > gantry_model::Duration::ZERO, "{}", step.name);
        assert!(!step.bake.data_points.is_empty(), "{}", step.name);
    }
}

/// Five boxes in each of small-1's two zones, set in the topology: ten in the region.
fn with_boxes(topology: &str) -> String {
    topology.replace("time_zone: Europe/Dublin,", "time_zone: Europe/Dublin, boxes: 5,")
}

#[test]
fn a_setting_the_fleet_cannot_satisfy_names_step_target_setting_and_boxes() {
    check(
        case(&format!("{MINIMAL}deployment: {{one_box_percent: 8}}\n"))
            .with("topology.yaml", &with_boxes(TOPOLOGY)),
        "\
$DIR/pipeline.yaml:4:31: error: step `wave-1/one-box`, target prod/small-1/s1a: one box of 10 in its region would take 10.0% of its traffic, more than one_box_percent 8% (`one_box_percent: 8`, 10 boxes in the region by the topology)
  hint: a 8% share needs at least 13 boxes in the region; raise `one_box_percent` to 10 or give the region more boxes in the topology",
    );
    check(
        case(&format!("{MINIMAL}deployment: {{one_box_percent: 10}}\n"))
            .with("topology.yaml", &with_boxes(TOPOLOGY)),
        "ok",
    );
    check(
        case(&format!(
            "{MINIMAL}deployment: {{minimum_healthy_hosts: {{type: FLEET_PERCENT, value: 100}}}}\n"
        )),
        "\
$DIR/pipeline.yaml:4:37: error: stage `alpha`: a floor of 100% of the fleet keeps every box in service, so no box of any fleet size can ever be replaced
  hint: keep fewer healthy, e.g. `{type: FLEET_PERCENT, value: 66}`",
    );
    check(
        case(&format!(
            "{MINIMAL}deployment: {{minimum_healthy_hosts: {{type: HOST_COUNT, value: 5}}}}\n"
        ))
        .with("topology.yaml", &with_boxes(TOPOLOGY)),
        "\
$DIR/pipeline.yaml:4:37: error: step `wave-1/one-box`, target prod/small-1/s1a: `minimum_healthy_hosts` keeps 5 of its 5 boxes healthy, so no box can be replaced
  hint: lower the floor, or give the target more boxes in the topology
$DIR/pipeline.yaml:4:37: error: step `wave-1/zone-1`, target prod/small-1/s1a: `minimum_healthy_hosts` keeps 5 of its 5 boxes healthy, so no box can be replaced
  hint: lower the floor, or give the target more boxes in the topology
$DIR/pipeline.yaml:4:37: error: step `wave-1/zone-2`, target prod/small-1/s1b: `minimum_healthy_hosts` keeps 5 of its 5 boxes healthy, so no box can be replaced
  hint: lower the floor, or give the target more boxes in the topology",
    );
    // A region of no boxes: no one-box share fits it, so the hint offers only boxes.
    check(
        case(&format!("{MINIMAL}deployment: {{one_box_percent: 10}}\n")).with(
            "topology.yaml",
            &TOPOLOGY.replace("time_zone: Europe/Dublin,", "time_zone: Europe/Dublin, boxes: 0,"),
        ),
        "\
$DIR/pipeline.yaml:4:31: error: step `wave-1/one-box`, target prod/small-1/s1a: the region has no boxes (`one_box_percent: 10`, 0 boxes in the region by the topology)
  hint: a 10% share needs at least 10 boxes in the region; give the region boxes in the topology
(model defaults): field `deployment.minimum_healthy_hosts`: error: step `wave-1/one-box`, target prod/small-1/s1a: the topology gives the target 0 boxes, so no deployment there can replace any
  hint: give the target boxes in the topology, or leave `boxes` out where the count is not known
(model defaults): field `deployment.minimum_healthy_hosts`: error: step `wave-1/zone-1`, target prod/small-1/s1a: the topology gives the target 0 boxes, so no deployment there can replace any
  hint: give the target boxes in the topology, or leave `boxes` out where the count is not known
(model defaults): field `deployment.minimum_healthy_hosts`: error: step `wave-1/zone-2`, target prod/small-1/s1b: the topology gives the target 0 boxes, so no deployment there can replace any
  hint: give the target boxes in the topology, or leave `boxes` out where the count is not known",
    );
}

#[test]
fn a_stage_override_of_one_deployment_field_keeps_the_pipeline_s_others() {
    let loaded = load(case(&format!(
        "{MINIMAL}deployment: {{hook_timeout: 25m, one_box_percent: 5}}\npreprod:\n  gamma: {{deployment: {{batch_size: {{type: HOST_COUNT, value: 1}}}}}}\n"
    )));
    let gamma = &loaded.spec.preprod.gamma.as_ref().unwrap().deployment.as_ref().unwrap();
    assert_eq!(gamma.batch_size, gantry_model::pipeline::HostCount::hosts(1));
    assert_eq!(gamma.hook_timeout, gantry_model::Duration::from_minutes(25));
    assert_eq!(gamma.one_box_percent, 5);
}

#[test]
fn long_keys_and_values_are_bounded_in_messages() {
    use gantry_spec::de::MAX_SUGGESTION_CHARS;
    use gantry_spec::diagnostic::MAX_ECHO_CHARS;
    // A word within the suggestion bound is compared; one past it is not searched at all.
    let candidate = "b".repeat(MAX_SUGGESTION_CHARS);
    let typo = format!("{}x", "b".repeat(MAX_SUGGESTION_CHARS - 1));
    assert_eq!(gantry_spec::de::closest(&typo, &[&candidate]), Some(candidate.as_str()));
    let long_candidate = "b".repeat(MAX_SUGGESTION_CHARS + 1);
    let long_typo = format!("{}x", "b".repeat(MAX_SUGGESTION_CHARS));
    assert_eq!(gantry_spec::de::closest(&long_typo, &[&long_candidate]), None);
    // A 1 MiB key is refused with no suggestion and its name cut short.
    let key = "k".repeat(1024 * 1024);
    // (YAML's implicit keys stop at 1024 characters; an explicit `? key` has no such limit.)
    let (got, _) = case(&format!("{MINIMAL}? {key}\n: 1\n")).run();
    let expected = format!(
        "$DIR/pipeline.yaml:4:3: error: unknown field `{}… ({} more characters)`",
        "k".repeat(MAX_ECHO_CHARS),
        key.len() - MAX_ECHO_CHARS
    );
    assert!(got.starts_with(&expected), "{}", &got[..got.len().min(300)]);
    assert!(got.contains("hint: expected one of"));
    assert!(got.len() < 1000);
    // A huge value is echoed cut to MAX_ECHO_CHARS characters, saying how much was left out.
    let value = "x".repeat(1024 * 1024);
    let (got, _) = case(&format!("{MINIMAL}waves: {value}\n")).run();
    let echoed = format!(
        "`{}… ({} more characters)`",
        "x".repeat(MAX_ECHO_CHARS),
        value.len() - MAX_ECHO_CHARS
    );
    assert_eq!(
        got,
        format!("$DIR/pipeline.yaml:4:8: error: expected a list, found the string {echoed}")
    );
    assert!(got.len() < 300);
}

#[test]
fn a_conflict_a_child_introduces_names_both_lines() {
    let parent = ORG.replace(
        "evaluation_periods: 5, datapoints_to_alarm: 3",
        "evaluation_periods: 5, datapoints_to_alarm: 4",
    );
    check(
        case(&format!(
            "{MINIMAL}alarms:\n  definitions:\n    Latency: {{metric: {{evaluation_periods: 2}}}}\n"
        ))
        .with("org.yaml", &parent),
        "$DIR/org.yaml:20:113: error: datapoints_to_alarm (4) must be between 1 and evaluation_periods (2) (`evaluation_periods` is written at $DIR/pipeline.yaml:6:44)",
    );
    check(
        case(&format!("{MINIMAL}time_windows: {{not_before: '16:00'}}\n"))
            .with("org.yaml", &format!("{ORG}  not_after: '15:00'\n")),
        "$DIR/org.yaml:26:14: error: not_after (15:00:00) is not later than not_before (16:00:00) (`not_before` is written at $DIR/pipeline.yaml:4:28)",
    );
}

#[test]
fn malformed_files_say_where_and_what_in_their_own_terms() {
    check(
        case("extends: org.yaml\npipeline: svc-code\nservice: sv\u{e9}\n").with_bytes(
            "pipeline.yaml",
            b"extends: org.yaml\npipeline: svc-code\nservice: sv\xe9\n",
        ),
        "\
$DIR/pipeline.yaml:3:12: error: the file is not UTF-8 text: invalid byte sequence [e9]
  hint: save the file as UTF-8",
    );
    check(
        case("# nothing here yet\n"),
        "\
$DIR/pipeline.yaml: error: the file is empty (or holds only comments or `null`); expected a mapping of fields
  hint: a pipeline definition starts with fields such as `pipeline:` and `extends:`",
    );
    check(
        case(&format!("{MINIMAL}limits: {{max_artifacts_in_production: -5}}\n")),
        "$DIR/pipeline.yaml:4:39: error: expected a whole number from 0 to 4294967295, found -5",
    );
    check(
        case(&format!("{MINIMAL}time_windows: {{allow: [{{cron: '* 9-14 * 13 MON'}}]}}\n")),
        "\
$DIR/pipeline.yaml:4:31: error: invalid cron `* 9-14 * 13 MON`: field 4 (month) `13` is not valid: months are 1 to 12 or JAN to DEC, as a value, a range `a-b`, a list `a,b`, a step `*/n` or `*`
  hint: five fields: minute hour day-of-month month day-of-week, e.g. `* 9-14 * * MON-THU`",
    );
    check(
        case(&format!("{MINIMAL}time_windows: {{holidays: {{calendars: [h.ics]}}}}\n")).with(
            "h.ics",
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE 20261225\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        ),
        "$DIR/pipeline.yaml:4:39: error: holiday calendar `$DIR/h.ics`: line 4: `DTSTART;VALUE=DATE 20261225` is not a content line `NAME:VALUE`",
    );
    check(
        case(MINIMAL).with(
            "topology.yaml",
            &TOPOLOGY.replace("zones: [{name: m1a}", "zones: [{name: s1a}"),
        ),
        "\
$DIR/topology.yaml:3:70: error: availability zone `s1a` is listed in region `small-1` and in region `mid-1`
  hint: zone names are unique across the topology",
    );
}

#[test]
fn jsonnet_recursion_and_deep_nesting_are_told_apart_and_located() {
    let deep = format!("{{ a: {}1{} }}\n", "[".repeat(600), "]".repeat(600));
    check(
        case("").with("pipeline.jsonnet", &deep).main("pipeline.jsonnet"),
        "$DIR/pipeline.jsonnet:1:105: error: Jsonnet: arrays, objects and parentheses nest deeper than 100 levels here; a pipeline definition nests a handful",
    );
    check(
        case("")
            .with("pipeline.jsonnet", "local f(n) = f(n + 1) + 1;\n{ pipeline: f(0) }\n")
            .main("pipeline.jsonnet"),
        "$DIR/pipeline.jsonnet:1:14: error: Jsonnet: more than 500 nested calls: a function (or a field) keeps calling itself; the position is the innermost call",
    );
}

#[test]
fn a_composite_naming_an_alarm_by_arn_says_what_to_write() {
    check(
        case(&format!(
            "{MINIMAL}alarms:\n  definitions:\n    Arned: {{composite: 'ALARM(\"arn:aws:cloudwatch:eu-west-1:111122223333:alarm:Faults\")'}}\n"
        )),
        "\
$DIR/pipeline.yaml:6:24: error: composite `Arned` names the alarm `Faults` by its ARN `arn:aws:cloudwatch:eu-west-1:111122223333:alarm:Faults`
  hint: name it `Faults`: a pipeline's composites are evaluated in every region; `gantry alarm import` resolves a CloudWatch composite's ARNs",
    );
}
