//! `gantry watch`: live progress of pipelines, per target — its phase, its boxes (how many run
//! the stage's artifact, how many are healthy), its bake with the data points counted so far,
//! and every blocker with its reason. In a terminal the picture is redrawn in place every
//! interval; otherwise each target's line is printed again only when it changes, so a log or a
//! pipe reads as a history.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use gantry_client::Client;
use gantry_client::views::{BoxDetail, Pipeline};
use gantry_model::agent::Health;
use gantry_model::{Target, Timestamp};

use super::operate::{Connection, ago, explain, lane_lines, short, stage_summary};

/// How often to refresh when no `--interval` is given: a round runs every quarter second, and a
/// person reads a second's changes comfortably.
pub const DEFAULT_INTERVAL: &str = "1s";

/// The most boxes read per refresh: each is one request; past this the picture says how many
/// were left out rather than hammering the controller.
pub const MAX_BOXES_PER_REFRESH: usize = 200;

#[derive(Args)]
pub struct WatchArgs {
    /// The pipeline to watch (default: every pipeline the token may read).
    pipeline: Option<String>,
    /// Time between refreshes, such as 1s or 5s.
    #[arg(long, default_value = DEFAULT_INTERVAL, value_name = "DURATION")]
    interval: gantry_model::Duration,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long, value_name = "N")]
    refreshes: Option<u64>,
    #[command(flatten)]
    connection: Connection,
}

/// One refresh: what the controller showed.
struct Picture {
    pipelines: Vec<Pipeline>,
    /// Per target, the boxes read for it.
    boxes: BTreeMap<Target, Vec<BoxDetail>>,
    /// Boxes of watched targets not read (past [`MAX_BOXES_PER_REFRESH`]).
    unread: usize,
}

pub fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client()?;
    let terminal = std::io::stdout().is_terminal();
    let interval = std::time::Duration::from_secs(args.interval.as_seconds().max(1));
    let json = args.connection.output == super::operate::Output::Json;
    let mut previous: BTreeMap<String, String> = BTreeMap::new();
    let mut refresh = 0u64;
    loop {
        refresh += 1;
        let now = Timestamp::now();
        let picture = match look(&client, args.pipeline.as_deref()) {
            Ok(picture) => Some(picture),
            // The controller restarting is worth waiting through; a refused token is not.
            Err(error @ gantry_client::Error::Unreachable { .. }) => {
                eprintln!("{}", explain(error));
                None
            }
            Err(error) => return Err(explain(error)),
        };
        let mut stdout = std::io::stdout().lock();
        if let Some(picture) = picture {
            if json {
                let value = serde_json::json!({"at": now, "pipelines": picture.pipelines});
                writeln!(stdout, "{value}")?;
            } else if terminal {
                // Home, each line cleared to its end, then the rest of the screen cleared: the
                // picture is redrawn in place without flicker or scrolling.
                let mut frame = String::from("\x1b[H");
                if refresh == 1 {
                    frame.insert_str(0, "\x1b[2J");
                }
                let header = format!(
                    "gantry watch — {} — every {}s, Ctrl-C to stop",
                    now.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    interval.as_secs()
                );
                let lines: Vec<String> =
                    std::iter::once(header).chain(draw(&picture, now)).collect();
                for line in fit(lines, terminal_size()) {
                    frame.push_str(&line);
                    frame.push_str("\x1b[K\n");
                }
                frame.push_str("\x1b[J");
                stdout.write_all(frame.as_bytes())?;
            } else {
                for (key, line) in plain_lines(&picture) {
                    if previous.get(&key) != Some(&line) {
                        writeln!(stdout, "{} {line}", now.strftime("%H:%M:%S"))?;
                        previous.insert(key, line);
                    }
                }
            }
            stdout.flush()?;
        }
        drop(stdout);
        if args.refreshes.is_some_and(|last| refresh >= last) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
}

/// The terminal's (rows, columns), when stdout is one that says.
fn terminal_size() -> Option<(usize, usize)> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row as usize, size.ws_col as usize))
}

/// The picture cut to the terminal: a line longer than the width would wrap and a picture
/// taller than the screen would scroll, and either breaks redrawing in place. The last row
/// stays empty for the cursor.
fn fit(mut lines: Vec<String>, size: Option<(usize, usize)>) -> Vec<String> {
    let Some((rows, columns)) = size else { return lines };
    let room = rows.saturating_sub(1).max(1);
    if lines.len() > room {
        let hidden = lines.len() - room + 1;
        lines.truncate(room - 1);
        lines
            .push(format!("… {hidden} more lines: make the terminal taller or watch one pipeline"));
    }
    for line in &mut lines {
        if let Some((cut, _)) = line.char_indices().nth(columns) {
            line.truncate(cut);
        }
    }
    lines
}

fn look(client: &Client, pipeline: Option<&str>) -> Result<Picture, gantry_client::Error> {
    let pipelines = match pipeline {
        Some(name) => vec![client.pipeline(name)?],
        None => client.pipelines()?.pipelines,
    };
    let targets: Vec<&Target> = pipelines
        .iter()
        .flat_map(|p| &p.status.stages)
        .flat_map(|stage| &stage.lanes)
        .map(|lane| &lane.target)
        .collect();
    let mut boxes: BTreeMap<Target, Vec<BoxDetail>> = BTreeMap::new();
    let mut unread = 0;
    if !targets.is_empty() {
        let listed = client.boxes()?.boxes;
        let mut read = 0;
        for summary in listed.iter().filter(|b| targets.contains(&&b.target)) {
            if read == MAX_BOXES_PER_REFRESH {
                unread += 1;
                continue;
            }
            read += 1;
            match client.box_detail(&summary.box_id.0) {
                Ok(detail) => boxes.entry(summary.target.clone()).or_default().push(detail),
                // Gone between the list and the read (the controller restarted): the next
                // refresh lists what is there.
                Err(gantry_client::Error::Refused { status: 404, .. }) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(Picture { pipelines, boxes, unread })
}

/// The boxes of `target` as one phrase: `4 boxes, 4 healthy, 1 on sha256:…`.
fn fleet_line(
    picture: &Picture,
    pipeline: &str,
    stage_artifact: Option<gantry_model::Digest>,
    target: &Target,
) -> String {
    let Some(boxes) = picture.boxes.get(target) else { return "no boxes registered".into() };
    let mut healthy = 0;
    let mut on_artifact = 0;
    for detail in boxes {
        let slot = detail
            .report
            .as_ref()
            .and_then(|report| report.pipelines.iter().find(|p| p.pipeline == pipeline));
        if let Some(slot) = slot {
            healthy += usize::from(slot.health == Health::Healthy);
            on_artifact += usize::from(stage_artifact.is_some() && slot.running == stage_artifact);
        }
    }
    let mut line = format!("{} boxes, {healthy} healthy", boxes.len());
    if let Some(artifact) = stage_artifact {
        line.push_str(&format!(", {on_artifact} on {}", short(&artifact)));
    }
    line
}

/// The terminal picture.
fn draw(picture: &Picture, now: Timestamp) -> Vec<String> {
    let mut lines = Vec::new();
    if picture.pipelines.is_empty() {
        lines.push("no pipelines".into());
    }
    for pipeline in &picture.pipelines {
        lines.push(String::new());
        let held = if pipeline.status.held { "  [held]" } else { "" };
        lines.push(format!("{} (team {}){held}", pipeline.pipeline, pipeline.team));
        for stage in &pipeline.status.stages {
            let artifact = stage.artifact.map(|d| format!("  {}", short(&d))).unwrap_or_default();
            lines.push(format!("  {:<12} {}{artifact}", stage.stage, stage_summary(stage)));
            for lane in &stage.lanes {
                let mut lane_text = lane_lines(lane, now);
                let fleet = fleet_line(picture, &pipeline.pipeline, stage.artifact, &lane.target);
                lane_text.insert(1, format!("  {fleet}"));
                lines.extend(lane_text.into_iter().map(|line| format!("    {line}")));
            }
        }
        for rollback in &pipeline.status.rollbacks {
            let stuck =
                rollback.stuck.as_ref().map(|s| format!(" — stuck: {s}")).unwrap_or_default();
            lines.push(format!(
                "  rolling back {} to {} for {}: {}{stuck}",
                rollback.target,
                short(&rollback.to),
                ago(rollback.started_at, now),
                rollback.reason
            ));
        }
    }
    if picture.unread > 0 {
        lines.push(format!("({} more boxes not read this refresh)", picture.unread));
    }
    lines
}

/// The plain picture: one keyed line per pipeline, stage and target, printed when it changes.
fn plain_lines(picture: &Picture) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for pipeline in &picture.pipelines {
        let name = &pipeline.pipeline;
        let held = if pipeline.status.held { "held" } else { "not held" };
        lines.push((name.clone(), format!("{name}: {held}")));
        for stage in &pipeline.status.stages {
            let artifact = stage.artifact.map(|d| format!(" {}", short(&d))).unwrap_or_default();
            lines.push((
                format!("{name}/{}", stage.stage),
                format!("{name} {}: {}{artifact}", stage.stage, stage_summary(stage)),
            ));
            for lane in &stage.lanes {
                // Bake time moves every second; the plain history records changes of state,
                // blockers and data points, not the clock.
                let blockers: Vec<String> = lane
                    .blockers
                    .iter()
                    .map(|b| format!("blocked by {} {:?}: {}", b.kind, b.name, b.reason))
                    .collect();
                let points: Vec<String> =
                    lane.evidence_from.iter().map(|(m, n)| format!("{m} {n}")).collect();
                let mut text = format!(
                    "{name} {} {}: {}; {}",
                    stage.stage,
                    lane.target,
                    lane.phase,
                    fleet_line(picture, name, stage.artifact, &lane.target)
                );
                if lane.bake_started.is_some() {
                    text.push_str(&format!("; baking, data points: {}", points.join(", ")));
                }
                for blocker in blockers {
                    text.push_str(&format!("; {blocker}"));
                }
                lines.push((format!("{name}/{}/{}", stage.stage, lane.target), text));
            }
        }
        for rollback in &pipeline.status.rollbacks {
            lines.push((
                format!("{name}/rollback/{}", rollback.target),
                format!(
                    "{name} rolling back {} to {}: {}",
                    rollback.target,
                    short(&rollback.to),
                    rollback.reason
                ),
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picture_fits_the_terminal() {
        let check = |lines: &[&str], size: Option<(usize, usize)>, expected: &[&str]| {
            let lines = lines.iter().map(|l| l.to_string()).collect();
            assert_eq!(fit(lines, size), expected, "{size:?}");
        };
        check(&["a", "b"], None, &["a", "b"]);
        check(&["abcdef", "b"], Some((10, 4)), &["abcd", "b"]);
        check(&["—— wide", "x"], Some((10, 2)), &["——", "x"]);
        check(
            &["1", "2", "3", "4", "5"],
            Some((4, 80)),
            &["1", "2", "… 3 more lines: make the terminal taller or watch one pipeline"],
        );
    }
}
