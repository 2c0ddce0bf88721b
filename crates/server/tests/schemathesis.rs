//! Schemathesis (from PyPI) against a running controller on loopback: generated requests from
//! the served OpenAPI document find no 5xx and no answer that contradicts the document.
//!
//! `GANTRY_SCHEMATHESIS` names the `schemathesis` executable (`.ci/run` installs it in a venv
//! under `target/`); without it the test says so and passes, unless
//! `GANTRY_REQUIRE_SCHEMATHESIS` is set, as it is in CI.

#[path = "support/organisation.rs"]
mod organisation;
use organisation::example_organisation;

use std::process::Command;

use gantry_server::server::{self, Config};

/// Examples per operation: enough to walk every field's edge cases, within the CI budget.
const MAX_EXAMPLES: &str = "25";

/// What must hold of every answer.
const CHECKS: &str = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance";

/// The whole run's time budget, per token.
const MAX_TIME_SECONDS: &str = "40";

#[test]
fn generated_requests_find_no_server_error_and_no_schema_contradiction() {
    let Some(schemathesis) = std::env::var_os("GANTRY_SCHEMATHESIS") else {
        assert!(
            std::env::var_os("GANTRY_REQUIRE_SCHEMATHESIS").is_none(),
            "GANTRY_REQUIRE_SCHEMATHESIS is set but GANTRY_SCHEMATHESIS is not"
        );
        eprintln!("skipped: set GANTRY_SCHEMATHESIS to a schemathesis executable to run it");
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let config = Config::new(temp.path().join("data"), "127.0.0.1:0".parse().unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (controller, opened) = server::open(&config, gantry_model::Timestamp::now()).unwrap();
    let admin =
        std::fs::read_to_string(opened.bootstrap_token.unwrap()).unwrap().trim().to_string();
    let operator = gantry_server::auth::Principal::Person {
        name: "operator".into(),
        person: "operator@example.com".into(),
        grants: vec![
            gantry_server::auth::Grant { role: gantry_server::auth::Role::Operator, team: None },
            gantry_server::auth::Grant { role: gantry_server::auth::Role::Approver, team: None },
        ],
    };
    let (_, operator) =
        controller.issue_token(operator, "test", gantry_model::Timestamp::now()).unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let organisation = Some(example_organisation(temp.path()));
    let rounds = server::start_rounds(controller.clone(), organisation).unwrap();
    // The alarm loop too, so the alarm routes answer with every pipeline's alarms.
    let _alarms = gantry_server::alarms::start(controller.clone(), Default::default()).unwrap();
    let served = runtime.spawn(server::serve(controller, listener, rounds, async move {
        let _ = stopped.await;
    }));

    let document = format!("http://{address}/api/v1/openapi.json");
    let mut reports = Vec::new();
    let mut failed = false;
    // As an admin (tokens, reads) and as an operator-approver (every pipeline action).
    for token in [&admin, &operator] {
        let output = Command::new(&schemathesis)
            // Its example database and reports stay in the test's own directory.
            .current_dir(temp.path())
            .args(["run", &document, "--checks", CHECKS])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--max-examples",
                MAX_EXAMPLES,
                "--max-time",
                MAX_TIME_SECONDS,
                "--workers",
                "1",
            ])
            .args(["--seed", "1", "--no-color", "--wait-for-schema", "10"])
            .output()
            .unwrap();
        failed |= !output.status.success();
        reports.push(format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let _ = stop.send(());
    runtime.block_on(served).unwrap().unwrap();
    let report = reports.join("\n");
    assert!(!failed, "schemathesis found problems:\n{report}");
    println!("{report}");
}
