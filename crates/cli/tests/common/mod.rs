//! Running the built `gantry` binary from the repository root, as a user would.

use std::path::Path;
use std::process::Command;

/// Runs gantry with `args`; returns whether it succeeded, its stdout and its stderr.
pub fn gantry(args: &[&str]) -> (bool, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output =
        Command::new(env!("CARGO_BIN_EXE_gantry")).args(args).current_dir(root).output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}
