//! Runs alarm test files, as `gantry alarm test FILE...` will once the CLI depends on this
//! crate: `cargo run -p gantry-alarms --example alarm-test -- crates/alarms/alarm-tests/*.yaml`.
//! Prints a line per file and per mismatch; exits non-zero when any expectation fails.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        eprintln!(
            "usage: alarm-test FILE...  (alarm test files; see crates/alarms/alarm-tests/README.md)"
        );
        return ExitCode::from(2);
    }
    match gantry_alarms::alarm_test::run_files(&files, &mut std::io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: writing the report: {error}");
            ExitCode::FAILURE
        }
    }
}
