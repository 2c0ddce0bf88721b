//! `gantry alarm test FILE...`: alarm unit tests, as `promtool test rules` gives Prometheus
//! users. The file format is documented in `examples/alarm-tests/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AlarmArgs {
    #[command(subcommand)]
    command: AlarmCommand,
}

#[derive(clap::Subcommand)]
enum AlarmCommand {
    /// Run alarm test files and report every expectation that does not hold.
    Test {
        /// Alarm test files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(args: AlarmArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AlarmCommand::Test { files } => {
            let passed =
                gantry_alarms::alarm_test::run_files(&files, &mut std::io::stdout().lock())?;
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
