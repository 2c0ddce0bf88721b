//! The `gantry` binary: one entry point for every Gantry command.
//!
//! Each area of the product owns one module under `commands/` with its clap arguments and a
//! `run` function; this file only routes. Data goes to stdout, diagnostics to stderr.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Run the deployment engine against a simulated fleet with faults, checking invariants.
    Simulate(commands::simulate::SimulateArgs),
    /// When a change entering a pipeline now reaches every stage and region, and why it waits.
    Eta(commands::simulate::EtaArgs),
    /// Alarms: test alarm definitions against recorded series.
    Alarm(commands::alarm::AlarmArgs),
    /// Build a commit without network access into a signed artifact.
    Build(commands::supply::BuildArgs),
    /// List, show and verify artifacts.
    Artifact(commands::supply::ArtifactArgs),
    /// Record and list code-review approvals.
    Review(commands::supply::ReviewArgs),
    /// Block artifacts by commit or package version.
    Block(commands::supply::BlockArgs),
    /// Run the controller: the engine on the real clock, its API and the agents' endpoints.
    Server(commands::server::ServerArgs),
    /// Audit log: verify its hash chain against the signed checkpoints.
    Audit(commands::server::AuditArgs),
    /// The host agent on one box: pulls commands, verifies, installs, runs appspec hooks.
    Agent(commands::agent::AgentArgs),
    /// The local fleet: boxes as processes on this machine, behind built-in load balancers.
    Fleet(commands::fleet::FleetArgs),
    /// Gantry's main job on this machine: a controller, a fleet, a good change and a bad one.
    Demo(commands::demo::DemoArgs),
    /// Every pipeline on the controller at a glance: its stages and whether it is held.
    Status(commands::operate::StatusArgs),
    /// One pipeline on the controller: stages, lanes, blockers, bakes, rollbacks, artifacts.
    Pipeline(commands::operate::PipelineArgs),
    /// Live progress per target, redrawn in place in a terminal (plain lines otherwise).
    Watch(commands::watch::WatchArgs),
    /// Approve an artifact waiting for manual promotion at a stage.
    Approve(commands::operate::ApproveArgs),
    /// Hold a pipeline or one stage: no deployment starts until it is released.
    Hold(commands::operate::HoldArgs),
    /// Release a hold.
    Release(commands::operate::ReleaseArgs),
    /// Lift one kind of blocker for a scope, with a reason, for at most 24 hours.
    Override(commands::operate::OverrideArgs),
    /// Roll back one target, one stage, or an artifact everywhere.
    Rollback(commands::operate::RollbackArgs),
    /// Run a failed stage again with the same artifact.
    Retry(commands::operate::RetryArgs),
    /// Ask for a newer artifact to replace one that failed in a stage, through every gate.
    RollForward(commands::operate::RollForwardArgs),
    /// Urgent mode: ask for it, approve it (senior approvers), list requests, end it.
    Urgent(commands::operate::UrgentArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::operate::CompletionsArgs),
    /// The sample service an example artifact's hooks start (see examples/sample-service).
    #[command(hide = true)]
    SampleService(commands::fleet::SampleServiceArgs),
    /// One built-in load balancer as a process (the local fleet starts these).
    #[command(hide = true)]
    LoadBalancer(commands::fleet::LoadBalancerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => commands::pipelines::plan(args),
        Command::Validate(args) => commands::pipelines::validate(args),
        Command::Check(args) => commands::pipelines::check(args),
        Command::Schema(args) => commands::pipelines::schema(args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Eta(args) => commands::simulate::eta(args),
        Command::Alarm(args) => commands::alarm::run(args),
        Command::Build(args) => commands::supply::build(args),
        Command::Artifact(args) => commands::supply::artifact(args),
        Command::Review(args) => commands::supply::review(args),
        Command::Block(args) => commands::supply::block(args),
        Command::Server(args) => commands::server::server(args),
        Command::Audit(args) => commands::server::audit(args),
        Command::Agent(args) => commands::agent::agent(args),
        Command::SampleService(args) => commands::fleet::sample_service(args),
        Command::LoadBalancer(args) => commands::fleet::load_balancer(args),
        Command::Fleet(args) => commands::fleet::fleet(args),
        Command::Status(args) => commands::operate::status(args),
        Command::Pipeline(args) => commands::operate::pipeline(args),
        Command::Watch(args) => commands::watch::watch(args),
        Command::Approve(args) => commands::operate::approve(args),
        Command::Hold(args) => commands::operate::hold(args),
        Command::Release(args) => commands::operate::release(args),
        Command::Override(args) => commands::operate::override_blocker(args),
        Command::Rollback(args) => commands::operate::rollback(args),
        Command::Retry(args) => commands::operate::retry(args),
        Command::RollForward(args) => commands::operate::roll_forward(args),
        Command::Urgent(args) => commands::operate::urgent(args),
        Command::Completions(args) => commands::operate::completions(args, Cli::command()),
        Command::Demo(args) => commands::demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
