//! `gantry alarm test FILE...`: alarm unit tests, as `promtool test rules` gives Prometheus
//! users. The file format is documented in `examples/alarm-tests/README.md`.
//!
//! `gantry alarm import FILE`: CloudWatch alarms from a CloudFormation template (`cdk synth`)
//! or `aws cloudwatch describe-alarms` JSON, written as an abstract definition file a pipeline
//! can extend (see `docs/alarms.md`). What cannot be translated goes to stderr.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use gantry_alarms::import::{ImportOptions, Imported, SourceFormat};

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
    /// Translate CloudWatch alarms into Gantry alarm definitions.
    Import {
        /// A CloudFormation template (JSON or YAML, as `cdk synth` writes it) or the JSON of
        /// `aws cloudwatch describe-alarms`.
        file: PathBuf,
        /// The region composite rules' alarm ARNs must be in (a template's `AWS::Region`).
        #[arg(long)]
        region: Option<String>,
        /// The account composite rules' alarm ARNs must be in (a template's `AWS::AccountId`).
        #[arg(long)]
        account: Option<String>,
        /// The parent the written file extends (e.g. the team's defaults), so pipelines can
        /// extend it in turn.
        #[arg(long)]
        extends: Option<String>,
        /// Write the definitions here instead of to stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub fn run(args: AlarmArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AlarmCommand::Test { files } => {
            let passed =
                gantry_alarms::alarm_test::run_files(&files, &mut std::io::stdout().lock())?;
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        AlarmCommand::Import { file, region, account, extends, output } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let imported = gantry_alarms::import::import(&text, &ImportOptions { region, account })
                .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
            for finding in &imported.skipped {
                eprintln!("not translated: {finding}");
            }
            for finding in &imported.notes {
                eprintln!("dropped: {finding}");
            }
            eprintln!(
                "{} alarms translated, {} not",
                imported.definitions.len(),
                imported.skipped.len()
            );
            let document = render(&imported, &file, extends.as_deref())?;
            match output {
                Some(path) => std::fs::write(&path, document)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{document}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The definitions as an abstract defaults file: JSON values in YAML, so every name and rule
/// keeps its exact characters.
fn render(
    imported: &Imported,
    file: &std::path::Path,
    extends: Option<&str>,
) -> anyhow::Result<String> {
    let source = match imported.format {
        SourceFormat::CloudFormation => "CloudFormation template",
        SourceFormat::DescribeAlarms => "describe-alarms output",
    };
    let mut text =
        format!("# Imported by `gantry alarm import` from the {source} {}.\n", file.display());
    for finding in &imported.skipped {
        writeln!(text, "# Not translated: {finding}")?;
    }
    text.push_str("abstract: true\n");
    if let Some(parent) = extends {
        writeln!(text, "extends: {}", serde_json::to_string(parent)?)?;
    }
    text.push_str("alarms:\n  definitions:\n");
    if imported.definitions.is_empty() {
        text.push_str("    {}\n");
    }
    for (name, definition) in &imported.definitions {
        writeln!(
            text,
            "    {}: {}",
            serde_json::to_string(name)?,
            serde_json::to_string(definition)?
        )?;
    }
    Ok(text)
}
