//! `gantry simulate` and `gantry eta` as a user runs them.

mod common;

use common::gantry;

#[test]
fn a_short_simulation_batch_runs_clean() {
    let (ok, stdout, stderr) = gantry(&["simulate", "--seeds", "3"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("rollback executed") || stdout.contains("never reached"), "{stdout}");
}

#[test]
fn eta_explains_the_example_pipelines_global_rollout() {
    let (ok, stdout, stderr) = gantry(&["eta", "--start", "2026-11-23T14:00:00Z"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(
            "cart-service-config: a change entering at 2026-11-23T14:00:00Z reaches every region at"
        ),
        "{stdout}"
    );
    let regions =
        stdout.lines().filter(|line| line.split_whitespace().nth(1) == Some("done")).count();
    assert_eq!(
        regions, 24,
        "every production region of the example topology has a time:\n{stdout}"
    );
    assert!(stdout.contains("largest waits:"), "{stdout}");
}

#[test]
fn the_example_organisation_reaches_every_region_in_about_a_business_week() {
    // Monday 09:00 UTC, no holiday that week. The organisation's windows are Monday to Thursday,
    // 09:00-15:00 local: waves 1-4 land Monday to Thursday, and the regions of wave 5 that the
    // Thursday afternoon leaves behind start the next Monday.
    let (ok, stdout, stderr) = gantry(&["eta", "--start", "2026-11-02T09:00:00Z", "-o", "json"]);
    assert!(ok, "{stdout}\n{stderr}");
    let eta: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let business_days = eta["business_days"].as_u64().expect("business_days");
    assert!((4..=6).contains(&business_days), "{business_days} business days:\n{stdout}");
    let stages: Vec<&str> =
        eta["stages"].as_array().unwrap().iter().map(|s| s[0].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        ["alpha", "beta", "gamma", "wave-1", "wave-2", "wave-3", "wave-4", "wave-5"]
    );
    // The longest wait is explained by the window rules that kept it closed.
    let longest = eta["waits"][0]["what"].as_str().expect("a wait");
    assert!(longest.contains("closed Thu") && longest.contains("Friday"), "{longest}");
}
