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
    let regions = stdout.lines().filter(|line| line.trim_end().contains(" done 20")).count();
    assert_eq!(
        regions, 24,
        "every production region of the example topology has a time:\n{stdout}"
    );
    assert!(stdout.contains("largest waits:"), "{stdout}");
}
