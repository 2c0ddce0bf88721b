//! Every limit the engine holds itself to, each a number in one place with the reason for it.

/// Seconds after which a box observation no longer counts: a box not heard from for two minutes
/// may be gone, so it is not healthy capacity (fail closed). Agents report every 30 s or faster.
pub const MAX_OBSERVATION_AGE: i64 = 120;

/// Seconds after which an alarm reading is stale: it can neither complete a bake nor clear an
/// alarm blocker. Alarm sources publish every minute; two missed publications are an outage.
pub const MAX_ALARM_AGE: i64 = 180;

/// Seconds between re-sends of a test-gate request that has not been answered. Requests are
/// idempotent by id, so re-sending heals lost messages without ever running a gate twice.
pub const RESEND_INTERVAL: i64 = 60;

/// Box commands are re-sent on evidence: as soon as a report of the box made after the send shows
/// neither the command in progress nor its outcome (the message was lost). When no report of the
/// box arrives at all, the command is re-sent this many seconds after the last send. Commands are
/// idempotent by id, so a re-send never applies a command twice.
pub const RESEND_UNOBSERVED: i64 = 300;

/// Seconds before a box whose repair or rollback failed is commanded again, so a broken box
/// costs one command per ten minutes rather than one per tick.
pub const RETRY_BACKOFF: i64 = 600;

/// Known-good artifacts remembered per target: enough to roll back past a long run of recalled
/// artifacts, small enough that state stays a few kilobytes per target.
pub const MAX_KNOWN_GOOD_PER_TARGET: usize = 16;

/// Artifacts remembered per pipeline; older ones no stage, target or rollback refers to are
/// forgotten. A pipeline receiving one artifact per commit keeps about a week of history.
pub const MAX_ARTIFACTS_PER_PIPELINE: usize = 256;

/// Operator command ids remembered for de-duplication; a client retries within seconds, so the
/// last thousand commands cover every retry.
pub const MAX_REMEMBERED_OPERATOR_COMMANDS: usize = 1_024;

/// The longest an override may last: 24 hours (reliability.md I15's `T_max`), the limit the
/// operator API states too. Long enough to carry a fix across a night or a closed window, short
/// enough that no override outlives the incident it was granted for by a day; longer requests
/// are refused, and a person must renew an override to keep lifting a blocker.
pub const MAX_OVERRIDE_SECONDS: i64 = 24 * 3600;

/// Overrides and holds kept per pipeline; expired overrides beyond this are forgotten first.
pub const MAX_OVERRIDES_PER_PIPELINE: usize = 64;

/// Artifacts whose data-point counts are kept per metric and target: the one deploying, the one
/// it replaces, and a little history. Evidence is per artifact, so counts never mix.
pub const MAX_DATA_POINT_ARTIFACTS: usize = 4;

/// Seconds between re-checks of a bake that waits for evidence (data points or a fresh OK alarm
/// reading): alarm sources publish every minute, so a minute later there may be new evidence.
/// Inputs re-check sooner; the wake-up makes sure a quiet bake is not forgotten.
pub const EVIDENCE_RECHECK: i64 = 60;

/// Reconcile passes one step makes at most: a pass that passed a stage or ended a rollback is
/// followed by another, since that may let more happen at the same instant.
pub const MAX_PASSES: usize = 4;

/// Seconds a deployment or rollback may go without any box on its way before it is reported
/// stuck: three observation rounds, so a health flap or a lost report (which heal within that)
/// is not reported, and a capacity floor that binds is, once.
pub const STUCK_AFTER: i64 = 180;
