//! `gantry alarm test` as a user runs it: golden files pass, a wrong expectation fails with the
//! alarm's reason.

mod common;

use std::path::Path;

use common::gantry;

#[test]
fn golden_alarm_tests_pass_and_a_wrong_expectation_fails() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/alarm-tests/one-box.yaml");
    let (ok, stdout, _) = gantry(&["alarm", "test", golden.to_str().unwrap()]);
    assert!(ok, "{stdout}");
    assert!(stdout.starts_with("ok "), "{stdout}");

    let directory = tempfile::tempdir().unwrap();
    let wrong = directory.path().join("wrong.yaml");
    let text = std::fs::read_to_string(&golden).unwrap().replace(
        "FrontEndApiService_OneBox_High_P99_Latency: ALARM, OneBox_Rollback: ALARM",
        "FrontEndApiService_OneBox_High_P99_Latency: OK, OneBox_Rollback: ALARM",
    );
    std::fs::write(&wrong, text).unwrap();
    let (ok, stdout, _) = gantry(&["alarm", "test", wrong.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stdout.contains("alarm `FrontEndApiService_OneBox_High_P99_Latency` is ALARM, expected OK"),
        "{stdout}"
    );
}

/// The committed CDK-synthesised template imports into a defaults file that a pipeline extends
/// and loads with no hand edits; what could not be translated is reported on stderr.
#[test]
fn imported_alarms_load_in_a_pipeline_with_no_hand_edits() {
    let directory = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let imported = directory.path().join("checkout-alarms.yaml");
    let (ok, stdout, stderr) = gantry(&[
        "alarm",
        "import",
        "crates/alarms/tests/import/checkout-stack.template.json",
        "--region",
        "eu-west-1",
        "--account",
        "111122223333",
        "--extends",
        examples.join("teams/storefront.yaml").to_str().unwrap(),
        "-o",
        imported.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(
            "not translated: `CpuAnomalyAlarmE1F2A3B4`: the threshold is an anomaly-detection band"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("5 alarms translated, 2 not"), "{stderr}");
    let pipeline = directory.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        "extends: checkout-alarms.yaml\npipeline: checkout-imported-code\nservice: checkout-imported\n\
         kind: code\nsources: [{repository: /srv/git/checkout}]\nbuild: {command: make, outputs: [out]}\n\
         alarms:\n  rollback+: [checkout-high-severity, checkout-two-of-three]\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = gantry(&["validate", pipeline.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    let (ok, stdout, stderr) = gantry(&["plan", pipeline.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("checkout-two-of-three"), "{stdout}");
}

#[test]
fn importing_a_file_of_neither_form_fails_saying_so() {
    let (ok, _, stderr) = gantry(&["alarm", "import", "examples/topology.yaml"]);
    assert!(!ok);
    assert!(stderr.contains("not a CloudFormation template (no `Resources`)"), "{stderr}");
}
