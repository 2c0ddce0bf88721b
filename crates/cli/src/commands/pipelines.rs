//! `gantry plan | validate | check | schema`: pipelines as code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use gantry_model::{Bake, Plan, Stage, Step};
use gantry_spec::{Definition, Diagnostics, Loaded};

#[derive(Args)]
pub struct PlanArgs {
    /// Pipeline definition (YAML or Jsonnet). Defaults to the example organisation's
    /// cart-service config pipeline, which inherits everything from its team and organisation.
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Pipeline definitions, topology files, or directories of them.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The organisation's policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// Check as of this date (YYYY-MM-DD) instead of today, e.g. to preview enforcement.
    #[arg(long)]
    pub date: Option<jiff::civil::Date>,
    /// Pipeline definitions or directories of them.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct SchemaArgs {}

/// The pipeline `gantry plan` shows when given none: the example organisation's flagship.
pub const EXAMPLE_PIPELINE: &str = "examples/services/cart-service/config.yaml";

pub fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let file = args.file.unwrap_or_else(|| PathBuf::from(EXAMPLE_PIPELINE));
    let loaded = match gantry_spec::load(&file) {
        Ok(loaded) => loaded,
        Err(diagnostics) => return Ok(report(&diagnostics)),
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &loaded.plan)?;
            writeln!(out)?;
        }
        Format::Table => write!(out, "{}", render_plan(&loaded))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints diagnostics to stderr and returns the failing exit code.
fn report(diagnostics: &Diagnostics) -> ExitCode {
    eprintln!("{diagnostics}");
    let count = diagnostics.iter().filter(|d| d.severity == gantry_spec::Severity::Error).count();
    eprintln!("{count} error{}", if count == 1 { "" } else { "s" });
    ExitCode::FAILURE
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let files = definition_files(&args.files)?;
    let mut failed = 0;
    for file in &files {
        match validate_one(file) {
            Ok(summary) => println!("ok    {}  {summary}", file.display()),
            Err(diagnostics) => {
                failed += 1;
                println!("error {}", file.display());
                eprintln!("{diagnostics}");
            }
        }
    }
    println!("{} checked, {} valid, {failed} invalid", files.len(), files.len() - failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Validates one file by what it holds: a pipeline (or abstract defaults), a topology, a policy
/// or alarm tests.
fn validate_one(file: &Path) -> Result<String, Diagnostics> {
    let node = gantry_spec::read_node(file)?;
    if node.get("tests").is_some() && node.get("alarms").is_some() && node.get("pipeline").is_none()
    {
        return validate_alarm_tests(file);
    }
    if node.get("rules").is_some() && node.get("pipeline").is_none() {
        let policy = gantry_spec::policy::load_policy(file)?;
        return Ok(format!(
            "policy: {} rules set, {} exemptions",
            policy.rules.len(),
            policy.exemptions.len()
        ));
    }
    if node.get("regions").is_some() && node.get("pipeline").is_none() {
        let topology = gantry_spec::load_topology_file(file)?;
        return Ok(format!(
            "topology: {} regions, {} zones",
            topology.regions.len(),
            topology.zone_count()
        ));
    }
    match gantry_spec::load_definition(file)? {
        Definition::Abstract { .. } => {
            Ok("abstract defaults: checked through the pipelines that extend them".to_string())
        }
        Definition::Pipeline(loaded) => {
            let steps: usize = loaded.plan.stages.iter().map(|stage| stage.steps.len()).sum();
            Ok(format!(
                "pipeline {}: {} stages, {steps} steps",
                loaded.plan.pipeline,
                loaded.plan.stages.len()
            ))
        }
    }
}

/// An alarm test file is valid when it loads and every expectation in it holds.
fn validate_alarm_tests(file: &Path) -> Result<String, Diagnostics> {
    let whole = || gantry_spec::Location::whole_file(file);
    let text = std::fs::read_to_string(file).map_err(|error| {
        gantry_spec::Diagnostic::error(whole(), format!("cannot read: {error}"))
    })?;
    let report = gantry_alarms::alarm_test::run(&text, &file.display().to_string())
        .map_err(|error| gantry_spec::Diagnostic::error(whole(), error.to_string()))?;
    if !report.mismatches.is_empty() {
        let failures = report.mismatches.iter().map(|mismatch| {
            gantry_spec::Diagnostic::error(whole(), mismatch.to_string())
                .with_hint("run `gantry alarm test` on the file for the whole report")
        });
        return Err(Diagnostics(failures.collect()));
    }
    Ok(format!("alarm tests: {} tests, {} checks hold", report.tests, report.checks))
}

/// Expands directories into the definition files they hold (YAML and Jsonnet), sorted,
/// leaving out application revisions (directories with an `appspec.yml`). Files named on the
/// command line are taken as they are.
fn definition_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect(path, &mut files)
                .with_context(|| format!("cannot list the directory {}", path.display()))?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Whether `directory` is an application revision (it holds a CodeDeploy `appspec.yml`): its
/// YAML files are the application's, not pipeline definitions.
fn is_revision(directory: &Path) -> bool {
    ["appspec.yml", "appspec.yaml"].iter().any(|name| directory.join(name).is_file())
}

fn collect(directory: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if is_revision(directory) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(directory)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, files)?;
        } else if matches!(
            path.extension().and_then(|extension| extension.to_str()),
            Some("yaml" | "yml" | "jsonnet")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let policy = match gantry_spec::policy::load_policy(&args.policy) {
        Ok(policy) => policy,
        Err(diagnostics) => return Ok(report(&diagnostics)),
    };
    let today = match args.date {
        Some(date) => date,
        None => jiff::Zoned::now().date(),
    };
    let mut pipelines = Vec::new();
    let mut invalid = 0;
    for file in definition_files(&args.files)? {
        match gantry_spec::load_definition(&file) {
            Ok(Definition::Pipeline(loaded)) => pipelines.push(*loaded),
            Ok(Definition::Abstract { .. }) => {}
            Err(diagnostics) => {
                invalid += 1;
                eprintln!("{diagnostics}");
            }
        }
    }
    let outcome = gantry_spec::policy::check(&policy, &pipelines, today);
    let mut out = std::io::stdout().lock();
    writeln!(out, "best-practice check of {} pipelines as of {today}", pipelines.len())?;
    for finding in &outcome.findings {
        writeln!(out, "{finding}")?;
    }
    writeln!(out, "\nautomation")?;
    for automation in &outcome.automation {
        writeln!(out, "{automation}")?;
    }
    let enforced =
        outcome.findings.iter().filter(|finding| finding.is_enforced_violation()).count();
    let warnings = outcome
        .findings
        .iter()
        .filter(|finding| {
            finding.exempted.is_none() && finding.level == gantry_spec::policy::Level::Warn
        })
        .count();
    writeln!(out, "\n{enforced} enforced violations, {warnings} warnings")?;
    if invalid > 0 {
        eprintln!("{invalid} definitions did not load and were not checked");
    }
    Ok(if enforced > 0 || invalid > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub fn schema(_args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = schemars::schema_for!(gantry_model::PipelineSpec);
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}

/// The plan as a readable table: one row per step, one line per target.
pub fn render_plan(loaded: &Loaded) -> String {
    let plan = &loaded.plan;
    let mut text = String::new();
    let chain: Vec<String> = loaded.files.iter().map(|file| file.display().to_string()).collect();
    text.push_str(&format!(
        "pipeline {}  (team {}, service {}, kind {})\n",
        plan.pipeline,
        plan.team,
        plan.service,
        kind_name(plan)
    ));
    text.push_str(&format!("inherits {}\n\n", chain.join(" → ")));
    let mut rows: Vec<[String; 5]> =
        vec![["STAGE", "STEP", "TARGETS", "BAKE", "ROLLBACK ALARMS"].map(String::from)];
    for stage in &plan.stages {
        for (index, step) in stage.steps.iter().enumerate() {
            rows.extend(step_rows(stage, index, step));
        }
    }
    text.push_str(&table(&rows));
    text.push('\n');
    for stage in &plan.stages {
        let gates: Vec<String> = stage
            .tests
            .iter()
            .map(|test| format!("{} ({:?}, {})", test.name, test.gate.kind, test.gate.timeout))
            .collect();
        let promotion = match stage.promotion {
            gantry_model::pipeline::Promotion::Automatic => "automatic",
            gantry_model::pipeline::Promotion::Manual => "manual approval",
        };
        if !gates.is_empty() || stage.promotion != gantry_model::pipeline::Promotion::Automatic {
            text.push_str(&format!(
                "{}: promotion {promotion}; tests: {}\n",
                stage.name,
                if gates.is_empty() { "none".to_string() } else { gates.join(", ") }
            ));
        }
    }
    let blockers = &plan.alarm_blockers;
    text.push_str(&format!(
        "blockers: team alarms [{}], organisation alarms [{}]\n",
        blockers.team.join(", "),
        blockers.organisation.join(", ")
    ));
    let windows = &plan.time_windows;
    let allow: Vec<&str> = windows.allow.iter().map(|window| window.cron.as_str()).collect();
    text.push_str(&format!(
        "windows: allow [{}] in each region's time zone; not after {}; excluded days [{}]; {} holidays\n",
        allow.join("; "),
        windows.not_after.map(|time| time.to_string()).unwrap_or_else(|| "-".into()),
        windows.exclude_weekdays.iter().map(|day| format!("{day:?}").to_lowercase()).collect::<Vec<_>>().join(", "),
        windows.holidays.dates.len()
    ));
    text
}

fn kind_name(plan: &Plan) -> String {
    serde_json::to_value(plan.kind)
        .ok()
        .and_then(|value| value.as_str().map(String::from))
        .unwrap_or_default()
}

fn step_rows(stage: &Stage, index: usize, step: &Step) -> Vec<[String; 5]> {
    let stage_name = if index == 0 { stage.name.clone() } else { String::new() };
    let alarms = if step.rollback_alarms.is_empty() {
        "-".to_string()
    } else {
        step.rollback_alarms.join(", ")
    };
    let mut rows = Vec::new();
    // A cell-by-cell step deploys a zone without cells as one unit: say so.
    let target_text = |target: &gantry_model::Target| match (step.kind, &target.cell) {
        (gantry_model::StepKind::Cell(_), None) => format!("{target} (whole zone: no cells)"),
        _ => target.to_string(),
    };
    for (line, target) in step.targets.iter().enumerate() {
        rows.push(if line == 0 {
            [
                stage_name.clone(),
                step.name.clone(),
                target_text(target),
                bake_text(&step.bake),
                alarms.clone(),
            ]
        } else {
            [String::new(), String::new(), target_text(target), String::new(), String::new()]
        });
    }
    rows
}

fn bake_text(bake: &Bake) -> String {
    if bake.duration == gantry_model::Duration::ZERO && bake.data_points.is_empty() {
        return "-".to_string();
    }
    let mut text = bake.duration.to_string();
    for (metric, count) in &bake.data_points {
        text.push_str(&format!(" + {count} {metric}"));
    }
    text
}

fn table(rows: &[[String; 5]]) -> String {
    let widths: Vec<usize> = (0..5)
        .map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}
