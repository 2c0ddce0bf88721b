//! `gantry watch`: live progress of pipelines, per target — its phase, the deployment's batch,
//! its healthy capacity against its floor, its bake's countdown with the data points counted
//! against those required, and every blocker with its reason, all from the engine's status the
//! controller serves. In a terminal the picture is redrawn in place every
//! interval; otherwise each target's line is printed again only when it changes, so a log or a
//! pipe reads as a history.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use gantry_client::Client;
use gantry_client::views::{LaneStatus, PipelineView};
use gantry_model::Timestamp;

use super::operate::{
    Connection, ago, data_points, explain, kind_name, lane_lines, short, stage_summary,
};

/// How often to refresh when no `--interval` is given: a round runs every quarter second, and a
/// person reads a second's changes comfortably.
pub const DEFAULT_INTERVAL: &str = "1s";

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
    pipelines: Vec<PipelineView>,
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
    Ok(Picture { pipelines })
}

/// A target's deployment as one phrase: `batch 2/3 of 2 · 4/6 healthy, floor 4 · 3 on sha256:…`.
fn capacity_line(lane: &LaneStatus, stage_artifact: Option<gantry_model::Digest>) -> String {
    let Some(capacity) = lane.capacity else { return "no boxes registered".into() };
    let mut line = format!(
        "batch {}/{} of {} · {}/{} healthy, floor {}",
        capacity.batch,
        capacity.batches,
        capacity.batch_size,
        capacity.healthy,
        capacity.boxes,
        capacity.floor
    );
    if capacity.healthy < capacity.floor {
        line.push_str(" (below the floor: no box is taken until it recovers)");
    }
    if let Some(artifact) = stage_artifact {
        line.push_str(&format!(" · {} on {}", capacity.on_artifact, short(&artifact)));
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
                lane_text.insert(1, format!("  {}", capacity_line(lane, stage.artifact)));
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
                    .map(|b| format!("blocked by {} {:?}: {}", kind_name(b.kind), b.name, b.reason))
                    .collect();
                let mut text = format!(
                    "{name} {} {}: {}; {}",
                    stage.stage,
                    lane.target,
                    lane.phase,
                    capacity_line(lane, stage.artifact)
                );
                if let Some(until) = lane.bake_started.and(lane.bake_until) {
                    text.push_str(&format!(
                        "; baking until {}, data points: {}",
                        until.strftime("%H:%M:%S"),
                        data_points(lane)
                    ));
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
    use gantry_client::views::{Capacity, DataPoints};

    fn lane(phase: &str, capacity: Option<Capacity>) -> LaneStatus {
        let started: Timestamp = "2026-12-02T01:00:00Z".parse().unwrap();
        LaneStatus {
            region: "demo-east-1".into(),
            step: "zone-1".into(),
            target: gantry_model::Target {
                environment: "prod".into(),
                region: "demo-east-1".into(),
                zone: Some("demo-east-1a".into()),
                cell: None,
            },
            phase: phase.into(),
            blockers: Vec::new(),
            bake_started: Some(started),
            bake_until: Some(started + jiff::SignedDuration::from_secs(90)),
            evidence_from: Default::default(),
            data_points: [("requests".to_string(), DataPoints { counted: 40, required: 100 })]
                .into(),
            capacity,
        }
    }

    #[test]
    fn a_target_shows_its_batch_its_floor_and_its_bake_against_what_it_needs() {
        let now: Timestamp = "2026-12-02T01:00:30Z".parse().unwrap();
        let capacity = |healthy, batch| Capacity {
            boxes: 6,
            healthy,
            floor: 4,
            batch_size: 2,
            batches: 3,
            batch,
            on_artifact: 2,
        };
        let check = |lane: LaneStatus, expected: &[&str]| {
            let mut lines = lane_lines(&lane, now);
            lines.insert(1, format!("  {}", capacity_line(&lane, None)));
            assert_eq!(lines, expected);
        };
        check(
            lane("deploying", Some(capacity(4, 2))),
            &[
                "demo-east-1    zone-1       prod/demo-east-1/demo-east-1a    deploying",
                "  batch 2/3 of 2 · 4/6 healthy, floor 4",
                "  baking for 30s, 1m00s left; data points: requests 40/100",
            ],
        );
        check(
            lane("deploying", Some(capacity(3, 2))),
            &[
                "demo-east-1    zone-1       prod/demo-east-1/demo-east-1a    deploying",
                "  batch 2/3 of 2 · 3/6 healthy, floor 4 (below the floor: no box is taken until it recovers)",
                "  baking for 30s, 1m00s left; data points: requests 40/100",
            ],
        );
        check(
            lane("waiting", None),
            &[
                "demo-east-1    zone-1       prod/demo-east-1/demo-east-1a    waiting",
                "  no boxes registered",
                "  baking for 30s, 1m00s left; data points: requests 40/100",
            ],
        );
    }

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
