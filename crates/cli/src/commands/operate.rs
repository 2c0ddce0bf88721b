//! The operator's commands against a running controller: `gantry status`, `gantry pipeline
//! show`, `gantry approve`, `hold`, `release`, `override`, `rollback`, `retry`, `roll-forward`,
//! `urgent` (and `gantry watch` in [`super::watch`]), plus `gantry completions`. Each routes to `gantry_client` and
//! presents the answer: text for people, `-o json` for scripts, on stdout; refusals on stderr
//! with a non-zero exit.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use gantry_client::views::{
    BlockerKind, Decision, LaneStatus, PipelineView, StageStatus, UrgentRequestView, Verdict,
};
use gantry_client::{Action, Client, RollbackScope, Settings};
use gantry_model::{Digest, Target, Timestamp};

/// How to reach the controller, and how to print its answers; every operator command takes it.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// The controller's URL (else GANTRY_SERVER, else `server` in the config file, else
    /// http://127.0.0.1:7700).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The bearer token (else GANTRY_TOKEN, else `token` or `token_file` in the config file).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Text for people, or the API's JSON for scripts.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

impl Connection {
    pub fn client(&self) -> anyhow::Result<Client> {
        let settings = Settings::resolve(self.server.clone(), self.token.clone())?;
        Ok(Client::new(&settings))
    }
}

/// A client error, with the roles that grant a permission a 403 named.
pub fn explain(error: gantry_client::Error) -> anyhow::Error {
    let Some(permission) = error.needed_permission() else { return anyhow!(error) };
    let roles = serde_json::from_value::<gantry_server::auth::Permission>(permission.into())
        .map(|permission| {
            gantry_server::auth::Role::ALL
                .into_iter()
                .filter(|role| role.grants(permission))
                .map(|role| role.name())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if roles.is_empty() {
        return anyhow!(error);
    }
    anyhow!(
        "{error}; a token with one of these roles for the pipeline's team may: {}",
        roles.join(", ")
    )
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct PipelineArgs {
    #[command(subcommand)]
    action: PipelineAction,
}

#[derive(Subcommand)]
enum PipelineAction {
    /// One pipeline: every stage, its lanes and their blockers and bakes, rollbacks, artifacts.
    Show {
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Args)]
pub struct ApproveArgs {
    pipeline: String,
    /// The stage waiting for manual approval.
    #[arg(long)]
    stage: String,
    /// The artifact to let through (never one with your own commits).
    #[arg(long, value_name = "DIGEST")]
    artifact: Digest,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct HoldArgs {
    pipeline: String,
    /// Hold one stage only (default: the whole pipeline).
    #[arg(long)]
    stage: Option<String>,
    /// Why, for whoever sees the blocker and for the audit log.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct ReleaseArgs {
    pipeline: String,
    /// Release the hold on one stage (default: the pipeline's own hold).
    #[arg(long)]
    stage: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
#[command(group(ArgGroup::new("expiry").required(true).args(["for_", "until"])))]
pub struct OverrideArgs {
    pipeline: String,
    /// The kind of blocker to lift: team_alarm, organisation_alarm, time_window, content,
    /// manual_hold, in_flight_limit (unreviewed commits and a step's own rollback alarm cannot
    /// be lifted).
    #[arg(long)]
    blocker: String,
    /// Only in this stage (default: every stage).
    #[arg(long)]
    stage: Option<String>,
    /// Only in this region (default: every region).
    #[arg(long)]
    region: Option<String>,
    /// Why, for the audit log.
    #[arg(long)]
    reason: String,
    /// How long the override lasts, such as 2h or 30m (at most 24h).
    #[arg(long = "for", id = "for_", value_name = "DURATION")]
    for_: Option<gantry_model::Duration>,
    /// When it expires, as an RFC 3339 time (at most 24 hours from now).
    #[arg(long, value_name = "TIME")]
    until: Option<Timestamp>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["target", "stage", "everywhere"])))]
pub struct RollbackArgs {
    pipeline: String,
    /// One target, as environment/region[/zone] (a cell as environment/region//cell).
    #[arg(long, value_name = "TARGET", value_parser = parse_target)]
    target: Option<Target>,
    /// Every target of one stage running the stage's artifact.
    #[arg(long)]
    stage: Option<String>,
    /// Every target running this artifact, or anything built on it.
    #[arg(long, value_name = "DIGEST")]
    everywhere: Option<Digest>,
    /// Why, for the audit log.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct RetryArgs {
    pipeline: String,
    /// The failed stage to run again with the same artifact.
    #[arg(long)]
    stage: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct RollForwardArgs {
    pipeline: String,
    /// The stage where an artifact failed.
    #[arg(long)]
    stage: String,
    /// The newer artifact to replace it (it must be deployable and have passed the stages
    /// before; nothing is skipped).
    #[arg(long, value_name = "DIGEST")]
    artifact: Digest,
    /// Why, for the audit log.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Args)]
pub struct UrgentArgs {
    #[command(subcommand)]
    action: UrgentAction,
}

#[derive(Subcommand)]
enum UrgentAction {
    /// Ask for urgent mode for an artifact: its bakes are cut once enough senior approvers
    /// (other than you and the change's authors) approve, and nothing else may be in flight.
    Request {
        pipeline: String,
        #[arg(long, value_name = "DIGEST")]
        artifact: Digest,
        /// Why, for the approvers and the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Approve an urgent request (senior approvers named by the pipeline's urgent policy).
    Approve {
        pipeline: String,
        /// The request's id, as `gantry urgent request` or `gantry urgent list` shows it.
        request: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// The urgent requests waiting for approval.
    List {
        pipeline: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// End urgent mode: bakes are whole again.
    End {
        pipeline: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

/// `environment/region[/zone[/cell]]`, as `Target` prints itself.
fn parse_target(text: &str) -> Result<Target, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let non_empty = |part: Option<&&str>| part.filter(|p| !p.is_empty()).map(|p| p.to_string());
    match parts.as_slice() {
        [environment, region, ..]
            if parts.len() <= 4 && !environment.is_empty() && !region.is_empty() =>
        {
            Ok(Target {
                environment: environment.to_string(),
                region: region.to_string(),
                zone: non_empty(parts.get(2)),
                cell: non_empty(parts.get(3)),
            })
        }
        _ => Err(format!(
            "{text:?} is not a target: write environment/region/zone, such as prod/eu-west-1/eu-west-1a"
        )),
    }
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client()?;
    let list = client.pipelines().map_err(explain)?;
    if args.connection.output == Output::Json {
        return print_json(&list);
    }
    let mut out = String::new();
    if list.pipelines.is_empty() {
        eprintln!("no pipelines this token may read run on {}", client.server());
    }
    let width = list.pipelines.iter().map(|p| p.pipeline.len()).max().unwrap_or(0);
    for pipeline in &list.pipelines {
        let stages: Vec<String> = pipeline
            .status
            .stages
            .iter()
            .map(|stage| format!("{} {}", stage.stage, stage_summary(stage)))
            .collect();
        let held = if pipeline.status.held { " [held]" } else { "" };
        out.push_str(&format!(
            "{:width$}  {}{held}  {}\n",
            pipeline.pipeline,
            pipeline.team,
            stages.join(" · ")
        ));
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// A stage's phase in a few words: `idle`, `rollout 2/3 baked`, `failed: ...`.
pub fn stage_summary(stage: &StageStatus) -> String {
    if stage.phase != "rollout" || stage.lanes.is_empty() {
        return stage.phase.clone();
    }
    let baked = stage.lanes.iter().filter(|lane| lane.phase == "baked").count();
    let blocked = stage.lanes.iter().filter(|lane| !lane.blockers.is_empty()).count();
    let mut summary = format!("rollout {baked}/{} baked", stage.lanes.len());
    if blocked > 0 {
        summary.push_str(&format!(", {blocked} blocked"));
    }
    summary
}

pub fn pipeline(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    let PipelineAction::Show { name, connection } = args.action;
    let client = connection.client()?;
    let pipeline = client.pipeline(&name).map_err(explain)?;
    if connection.output == Output::Json {
        return print_json(&pipeline);
    }
    print!("{}", show(&pipeline, Timestamp::now()).join("\n") + "\n");
    Ok(ExitCode::SUCCESS)
}

/// The lines of `gantry pipeline show`.
pub fn show(pipeline: &PipelineView, now: Timestamp) -> Vec<String> {
    let status = &pipeline.status;
    let mut lines = vec![format!(
        "pipeline {} (team {}, service {}), plan v{}{}",
        pipeline.pipeline,
        pipeline.team,
        pipeline.service,
        status.plan_version,
        status.pending_plan.map(|v| format!(", v{v} pending")).unwrap_or_default()
    )];
    lines.push(format!("held: {}", if status.held { "yes" } else { "no" }));
    lines.push("stages:".into());
    for stage in &status.stages {
        let artifact = stage.artifact.map(|d| format!("  {}", short(&d))).unwrap_or_default();
        lines.push(format!("  {:<12} {}{artifact}", stage.stage, stage.phase));
        for lane in &stage.lanes {
            lines.extend(lane_lines(lane, now).into_iter().map(|line| format!("    {line}")));
        }
    }
    if !status.rollbacks.is_empty() {
        lines.push("rollbacks:".into());
        for rollback in &status.rollbacks {
            let stuck =
                rollback.stuck.as_ref().map(|s| format!(" — stuck: {s}")).unwrap_or_default();
            lines.push(format!(
                "  {} to {} since {}: {}{stuck}",
                rollback.target,
                short(&rollback.to),
                ago(rollback.started_at, now),
                rollback.reason
            ));
        }
    }
    lines.push("artifacts:".into());
    if pipeline.artifacts.is_empty() {
        lines.push("  none yet".into());
    }
    for artifact in &pipeline.artifacts {
        let mut notes =
            vec![if artifact.deployable { "deployable" } else { "not deployable" }.to_string()];
        if !artifact.unreviewed_commits.is_empty() {
            notes.push(format!("unreviewed: {}", artifact.unreviewed_commits.join(", ")));
        }
        if !artifact.authors.is_empty() {
            notes.push(format!("authors: {}", artifact.authors.join(", ")));
        }
        lines.push(format!("  #{} {}  {}", artifact.sequence, artifact.digest, notes.join("; ")));
    }
    lines
}

/// A lane: its target and phase, then one line per blocker and its bake.
pub fn lane_lines(lane: &LaneStatus, now: Timestamp) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<14} {:<12} {:<32} {}",
        lane.region,
        lane.step,
        lane.target.to_string(),
        lane.phase
    )];
    for blocker in &lane.blockers {
        let clears = match blocker.clears_at {
            Some(at) if at > now => format!(" (clears in {})", span(at.duration_since(now))),
            Some(_) => " (clearing)".to_string(),
            None => String::new(),
        };
        lines.push(format!(
            "  blocked by {} {:?}: {}{clears}",
            kind_name(blocker.kind),
            blocker.name,
            blocker.reason
        ));
    }
    if let Some(started) = lane.bake_started {
        let left = match lane.bake_until {
            Some(until) if until > now => format!(", {} left", span(until.duration_since(now))),
            Some(_) => ", time is up".to_string(),
            None => String::new(),
        };
        lines.push(format!(
            "  baking for {}{left}; data points: {}",
            ago(started, now),
            data_points(lane)
        ));
    }
    lines
}

/// The bake's evidence, per metric counted against required: `requests 40/100`.
pub fn data_points(lane: &LaneStatus) -> String {
    let points: Vec<String> = lane
        .data_points
        .iter()
        .map(|(metric, points)| format!("{metric} {}/{}", points.counted, points.required))
        .collect();
    if points.is_empty() { "none required".to_string() } else { points.join(", ") }
}

/// A blocker kind as the API names it: `team_alarm`, `time_window`, ...
pub fn kind_name(kind: BlockerKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|value| value.as_str().map(String::from))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// A digest shortened for people: `sha256:` and twelve hex digits.
pub fn short(digest: &Digest) -> String {
    let text = digest.to_string();
    text.chars().take("sha256:".len() + 12).collect()
}

/// How long ago `at` was, as `3m20s`.
pub fn ago(at: Timestamp, now: Timestamp) -> String {
    if at > now {
        return "0s".into();
    }
    span(now.duration_since(at))
}

fn span(duration: jiff::SignedDuration) -> String {
    let seconds = duration.as_secs().max(0) as u64;
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds:02}s"),
        _ => format!("{hours}h{minutes:02}m"),
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(ExitCode::SUCCESS)
}

/// Sends `action` and presents the engine's verdict: accepted (exit 0), queued (exit 0, the audit
/// log will say), rejected (the reason on stderr, exit 1).
fn act(connection: &Connection, pipeline: &str, action: Action) -> anyhow::Result<ExitCode> {
    let client = connection.client()?;
    let decision = client.act(pipeline, &action).map_err(explain)?;
    present(connection.output, pipeline, action.route(), &decision)
}

fn present(
    output: Output,
    pipeline: &str,
    what: &str,
    decision: &Decision,
) -> anyhow::Result<ExitCode> {
    if output == Output::Json {
        print_json(decision)?;
    }
    let detail = decision.detail.as_deref().unwrap_or("");
    match decision.status {
        Verdict::Accepted => {
            if output == Output::Text {
                println!("{what} {pipeline}: accepted ({}) {detail}", decision.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Queued => {
            if output == Output::Text {
                println!("{what} {pipeline}: queued ({})", decision.id);
            }
            eprintln!(
                "the controller has not decided yet; `gantry pipeline show {pipeline}` or the audit \
                 log will show the outcome of {}",
                decision.id
            );
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Rejected => {
            bail!("the engine refused to {what} {pipeline} ({}): {detail}", decision.id)
        }
    }
}

pub fn approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let action = Action::Approve { stage: args.stage, artifact: args.artifact };
    act(&args.connection, &args.pipeline, action)
}

pub fn hold(args: HoldArgs) -> anyhow::Result<ExitCode> {
    let action = Action::Hold { stage: args.stage, reason: args.reason };
    act(&args.connection, &args.pipeline, action)
}

pub fn release(args: ReleaseArgs) -> anyhow::Result<ExitCode> {
    act(&args.connection, &args.pipeline, Action::Release { stage: args.stage })
}

pub fn retry(args: RetryArgs) -> anyhow::Result<ExitCode> {
    act(&args.connection, &args.pipeline, Action::Retry { stage: args.stage })
}

pub fn override_blocker(args: OverrideArgs) -> anyhow::Result<ExitCode> {
    let expires_at = match (args.for_, args.until) {
        (_, Some(until)) => until,
        (Some(duration), None) => {
            let seconds = i64::try_from(duration.as_seconds()).context("--for is too long")?;
            Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(seconds))
                .context("--for is too long")?
        }
        (None, None) => unreachable!("clap requires --for or --until"),
    };
    let action = Action::Override {
        blocker: args.blocker,
        stage: args.stage,
        region: args.region,
        reason: args.reason,
        expires_at,
    };
    act(&args.connection, &args.pipeline, action)
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let scope = match (args.target, args.stage, args.everywhere) {
        (Some(target), None, None) => RollbackScope::Target(target),
        (None, Some(stage), None) => RollbackScope::Stage(stage),
        (None, None, Some(artifact)) => RollbackScope::Everywhere(artifact),
        _ => unreachable!("clap allows exactly one of --target, --stage, --everywhere"),
    };
    act(&args.connection, &args.pipeline, Action::Rollback { scope, reason: args.reason })
}

pub fn roll_forward(args: RollForwardArgs) -> anyhow::Result<ExitCode> {
    let action =
        Action::RollForward { stage: args.stage, artifact: args.artifact, reason: args.reason };
    act(&args.connection, &args.pipeline, action)
}

pub fn urgent(args: UrgentArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        UrgentAction::Request { pipeline, artifact, reason, connection } => {
            let client = connection.client()?;
            let request = client.request_urgent(&pipeline, &artifact, &reason).map_err(explain)?;
            present_urgent(connection.output, &request)
        }
        UrgentAction::Approve { pipeline, request, connection } => {
            let client = connection.client()?;
            let request = client.approve_urgent(&pipeline, &request).map_err(explain)?;
            present_urgent(connection.output, &request)
        }
        UrgentAction::List { pipeline, connection } => {
            let client = connection.client()?;
            let list = client.urgent_requests(&pipeline).map_err(explain)?;
            if connection.output == Output::Json {
                return print_json(&list);
            }
            if list.requests.is_empty() {
                eprintln!("no urgent request waits in {pipeline}");
            }
            for request in &list.requests {
                println!("{}", urgent_line(request));
            }
            Ok(ExitCode::SUCCESS)
        }
        UrgentAction::End { pipeline, connection } => {
            let client = connection.client()?;
            let decision = client.act(&pipeline, &Action::EndUrgent).map_err(explain)?;
            present(connection.output, &pipeline, "end urgent mode of", &decision)
        }
    }
}

/// One request: `urgent-… sha256:… asked by ana: 1 of 2 approvals (bo); waiting`.
fn urgent_line(request: &UrgentRequestView) -> String {
    let by = if request.approvals.is_empty() {
        String::new()
    } else {
        format!(" ({})", request.approvals.join(", "))
    };
    format!(
        "{} {} in {} asked by {}: {} of {} approvals{by}; {}",
        request.id,
        short(&request.artifact),
        request.pipeline,
        request.requested_by,
        request.approvals.len(),
        request.required,
        request.status
    )
}

/// An urgent request as it stands: waiting (exit 0), or the engine's verdict once approvals
/// sufficed (rejected exits 1).
fn present_urgent(output: Output, request: &UrgentRequestView) -> anyhow::Result<ExitCode> {
    if output == Output::Json {
        print_json(request)?;
    } else {
        println!("{}", urgent_line(request));
    }
    match &request.decision {
        None => {
            if output == Output::Text {
                eprintln!(
                    "waiting for approvals from {}: `gantry urgent approve {} {}`",
                    request.approvers.join(", "),
                    request.pipeline,
                    request.id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(decision) => present(output, &request.pipeline, "urgent mode for", decision),
    }
}

/// Prints the completion script of `command` for a shell.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_they_print() {
        let check = |text: &str, expected: Result<&str, ()>| {
            let parsed = parse_target(text).map(|t| t.to_string()).map_err(|_| ());
            assert_eq!(parsed.as_deref().map_err(|_| ()), expected, "{text}");
        };
        check("prod/eu-west-1/eu-west-1a", Ok("prod/eu-west-1/eu-west-1a"));
        check("gamma/us-east-1", Ok("gamma/us-east-1"));
        check("prod/us-east-1//cell-2", Ok("prod/us-east-1/cell-2"));
        check("prod", Err(()));
        check("/eu-west-1", Err(()));
        check("a/b/c/d/e", Err(()));
    }

    #[test]
    fn spans_read_as_people_say_them() {
        let check = |seconds: i64, expected: &str| {
            assert_eq!(span(jiff::SignedDuration::from_secs(seconds)), expected);
        };
        check(7, "7s");
        check(200, "3m20s");
        check(3 * 3600 + 61, "3h01m");
    }
}
