//! `gantry plan | validate | check | schema` as a user runs them: exit status, stdout, stderr.

mod common;

use common::gantry;

#[test]
fn plan_without_arguments_shows_the_example_organisation() {
    let (ok, stdout, _) = gantry(&["plan"]);
    assert!(ok);
    assert!(stdout.starts_with("pipeline cart-service-config"), "{stdout}");
    for line in ["wave-1/one-box", "prod/mx-central-1/mxc1-az1", "wave-2/zone-6", "wave-5/one-box"]
    {
        assert!(stdout.contains(line), "plan shows {line}:\n{stdout}");
    }
}

#[test]
fn plan_as_json_is_the_plan() {
    let (ok, stdout, _) =
        gantry(&["plan", "-o", "json", "examples/services/payments-ledger/code.yaml"]);
    assert!(ok);
    let plan: gantry_model::Plan = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan.pipeline, "payments-ledger-code");
    assert_eq!(plan.production_stages().count(), 5);
}

#[test]
fn validate_reports_errors_and_fails() {
    let directory = tempfile::tempdir().unwrap();
    let bad = directory.path().join("bad.yaml");
    std::fs::write(&bad, "extends: ../nowhere.yaml\n").unwrap();
    let (ok, stdout, stderr) = gantry(&["validate", "examples", bad.to_str().unwrap()]);
    assert!(!ok);
    let valid = stdout.lines().filter(|line| line.starts_with("ok ")).count();
    assert!(valid >= 23, "every example file is valid, alarm tests included:\n{stdout}");
    assert!(
        stdout.contains(&format!("{} checked, {valid} valid, 1 invalid", valid + 1)),
        "{stdout}"
    );
    assert!(stderr.contains("bad.yaml:1:10: error: cannot load the parent"), "{stderr}");
}

#[test]
fn check_passes_today_and_fails_once_a_rule_is_enforced() {
    let (ok, stdout, _) = gantry(&[
        "check",
        "--policy",
        "examples/policy.yaml",
        "--date",
        "2026-11-21",
        "examples/services",
    ]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("0 enforced violations, 2 warnings"), "{stdout}");
    assert!(
        stdout.contains("payments-ledger-infra: partly manual (1 of 7 promotions manual)"),
        "{stdout}"
    );
    let (ok, stdout, _) = gantry(&[
        "check",
        "--policy",
        "examples/policy.yaml",
        "--date",
        "2027-03-01",
        "examples/services",
    ]);
    assert!(!ok);
    assert!(
        stdout.contains("payments-ledger-tools: enforced [one-box-bake-at-least-1h]"),
        "{stdout}"
    );
}

#[test]
fn schema_describes_the_pipeline_fields() {
    let (ok, stdout, _) = gantry(&["schema"]);
    assert!(ok);
    let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    for field in ["pipeline", "extends", "waves", "bake", "alarms", "time_windows"] {
        assert!(properties.contains_key(field), "schema has {field}");
    }
}

#[test]
fn plan_says_when_a_cell_wave_deploys_a_zone_whole() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("topology.yaml"),
        "regions:\n  - {name: r1, traffic: 1, time_zone: UTC, zones: [{name: z1, cells: [c1]}, {name: z2}]}\n",
    )
    .unwrap();
    let pipeline = directory.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        "topology: topology.yaml\npipeline: p\nteam: t\nservice: s\nkind: code\n\
         sources: [{repository: /srv/git/s}]\nbuild: {command: make, outputs: [out]}\n\
         waves: [{rest: true, granularity: cell}]\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = gantry(&["plan", pipeline.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let row = |step: &str| stdout.lines().find(|line| line.contains(step)).unwrap_or_default();
    assert!(row("wave-1/cell-1").contains(" prod/r1/z1/c1 "), "{stdout}");
    assert!(row("wave-1/cell-2").contains(" prod/r1/z2 (whole zone: no cells) "), "{stdout}");
}
