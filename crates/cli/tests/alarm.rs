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
