//! The `gantry` binary: one entry point for every Gantry command.
//!
//! Each area of the product owns one module under `commands/` with its clap arguments and a
//! `run` function; this file only routes. Data goes to stdout, diagnostics to stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser)]
#[command(name = "gantry", version, about = "Safe, hands-off continuous deployment")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a pipeline expanded: every stage and step, its targets, bake and alarms.
    Plan(commands::pipelines::PlanArgs),
    /// Check pipeline definitions and report every error with its location.
    Validate(commands::pipelines::ValidateArgs),
    /// Apply the organisation's best-practice rules to pipelines.
    Check(commands::pipelines::CheckArgs),
    /// Print the JSON Schema of pipeline definitions, for editors.
    Schema(commands::pipelines::SchemaArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => commands::pipelines::plan(args),
        Command::Validate(args) => commands::pipelines::validate(args),
        Command::Check(args) => commands::pipelines::check(args),
        Command::Schema(args) => commands::pipelines::schema(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
