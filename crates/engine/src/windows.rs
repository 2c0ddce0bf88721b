//! Deployment time windows: whether a production deployment may *start* at an instant, and if
//! not, why and when it next may.
//!
//! Everything here is a pure function of ([`TimeWindows`], the region's [`TimeZone`], an
//! instant). Allow windows are five-field cron expressions that open a window of `duration` at
//! every match, in the window's own zone or else the region's; holidays, excluded weekdays and
//! `not_before` / `not_after` are read in the region's zone.
//!
//! Daylight-saving rules (jiff's "compatible" disambiguation, which croner follows too): a local
//! time that does not exist (the spring-forward gap) moves to the first instant after the gap,
//! so a `30 2 * * *` window on the night clocks jump from 02:00 to 03:00 opens at 03:00; a local
//! time that happens twice (the autumn fold) opens at its *first* occurrence only.

use std::str::FromStr;

use croner::Cron;
use gantry_model::pipeline::{TimeWindows, Weekday};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use serde::{Deserialize, Serialize};

/// How far ahead [`next_open`] looks before it says "not within a year": a window set that never
/// opens is a configuration error, and the blocker then says so instead of searching forever.
pub const WINDOW_SEARCH_HORIZON_DAYS: i64 = 400;
/// The most candidate instants [`next_open`] examines; each one skips at least to the next
/// cron match or local day, so a year of closed days needs well under this many.
pub const WINDOW_SEARCH_STEPS: usize = 2_000;

/// Why deployments may not start now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "closed_by", rename_all = "snake_case")]
pub enum Closure {
    /// No allow window covers the instant.
    OutsideAllowWindows,
    Holiday {
        date: Date,
    },
    ExcludedWeekday {
        weekday: Weekday,
    },
    BeforeNotBefore {
        not_before: Time,
    },
    AtOrAfterNotAfter {
        not_after: Time,
    },
}

impl std::fmt::Display for Closure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closure::OutsideAllowWindows => write!(f, "outside every allow window"),
            Closure::Holiday { date } => write!(f, "{date} is a holiday"),
            Closure::ExcludedWeekday { weekday } => {
                write!(f, "no deployments start on {weekday:?}")
            }
            Closure::BeforeNotBefore { not_before } => write!(f, "before {not_before} local time"),
            Closure::AtOrAfterNotAfter { not_after } => {
                write!(f, "at or after {not_after} local time")
            }
        }
    }
}

/// Why a window set could not be evaluated. The engine treats it as a closed window (fail closed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("allow window cron {cron:?} is invalid: {reason}")]
    InvalidCron { cron: String, reason: String },
    #[error("time zone {zone:?} is unknown: {reason}")]
    UnknownTimeZone { zone: String, reason: String },
    #[error("local time arithmetic failed: {0}")]
    Arithmetic(String),
}

fn arithmetic(error: jiff::Error) -> Error {
    Error::Arithmetic(error.to_string())
}

/// What [`closure`] and [`next_open`] read: the windows with their crons compiled once.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledWindows {
    windows: TimeWindows,
    region_zone: TimeZone,
    allow: Vec<(Cron, SignedDuration, TimeZone)>,
}

impl CompiledWindows {
    pub fn new(windows: &TimeWindows, region_zone: TimeZone) -> Result<Self, Error> {
        let mut allow = Vec::with_capacity(windows.allow.len());
        for window in &windows.allow {
            let cron = Cron::from_str(&window.cron).map_err(|error| Error::InvalidCron {
                cron: window.cron.clone(),
                reason: error.to_string(),
            })?;
            let zone = match &window.time_zone {
                Some(name) => TimeZone::get(name).map_err(|error| Error::UnknownTimeZone {
                    zone: name.clone(),
                    reason: error.to_string(),
                })?,
                None => region_zone.clone(),
            };
            let duration = SignedDuration::from_secs(window.duration.as_seconds() as i64);
            allow.push((cron, duration, zone));
        }
        Ok(CompiledWindows { windows: windows.clone(), region_zone, allow })
    }

    /// The same windows read in another region's zone, without parsing the crons again. Allow
    /// windows with a zone of their own keep it.
    pub fn in_zone(&self, region_zone: TimeZone) -> CompiledWindows {
        let allow = self
            .windows
            .allow
            .iter()
            .zip(&self.allow)
            .map(|(window, (cron, duration, zone))| {
                let zone = if window.time_zone.is_some() { zone } else { &region_zone };
                (cron.clone(), *duration, zone.clone())
            })
            .collect();
        CompiledWindows { windows: self.windows.clone(), region_zone, allow }
    }

    /// Why the window set is closed at `at`, and the earliest instant that reason could lift;
    /// `None` when deployments may start.
    pub fn closure(&self, at: Timestamp) -> Result<Option<(Closure, Timestamp)>, Error> {
        Ok(match self.state(at)? {
            State::Open { .. } => None,
            State::Closed { closure, lifts } => Some((closure, lifts)),
        })
    }

    fn state(&self, at: Timestamp) -> Result<State, Error> {
        let local = at.to_zoned(self.region_zone.clone());
        let start_of_tomorrow = || -> Result<Timestamp, Error> {
            Ok(local
                .tomorrow()
                .map_err(arithmetic)?
                .start_of_day()
                .map_err(arithmetic)?
                .timestamp())
        };
        let date = local.date();
        if self.windows.holidays.dates.contains(&date) {
            return Ok(State::Closed {
                closure: Closure::Holiday { date },
                lifts: start_of_tomorrow()?,
            });
        }
        let weekday = model_weekday(date.weekday());
        if self.windows.exclude_weekdays.contains(&weekday) {
            return Ok(State::Closed {
                closure: Closure::ExcludedWeekday { weekday },
                lifts: start_of_tomorrow()?,
            });
        }
        if let Some(not_before) = self.windows.not_before
            && local.time() < not_before
        {
            let opens = local.with().time(not_before).build().map_err(arithmetic)?;
            return Ok(State::Closed {
                closure: Closure::BeforeNotBefore { not_before },
                lifts: opens.timestamp(),
            });
        }
        if let Some(not_after) = self.windows.not_after
            && local.time() >= not_after
        {
            return Ok(State::Closed {
                closure: Closure::AtOrAfterNotAfter { not_after },
                lifts: start_of_tomorrow()?,
            });
        }
        // Open for now: it stays open at least until the day ends or `not_after` arrives, and,
        // with allow windows, until the covering window closes.
        let mut until = start_of_tomorrow()?;
        if let Some(not_after) = self.windows.not_after {
            until =
                until.min(local.with().time(not_after).build().map_err(arithmetic)?.timestamp());
        }
        if self.allow.is_empty() {
            return Ok(State::Open { until });
        }
        let mut next_match: Option<Timestamp> = None;
        let mut covered_until: Option<Timestamp> = None;
        for (cron, duration, zone) in &self.allow {
            let window_start = (at - *duration).to_zoned(zone.clone());
            let first = next_occurrence(cron, &window_start)?;
            if first.timestamp() <= at {
                let closes = first.timestamp() + *duration;
                covered_until = Some(covered_until.map_or(closes, |c| c.max(closes)));
                continue;
            }
            // The window covering `at` is not open; the next one opens at the next match after `at`.
            let after = next_occurrence(cron, &at.to_zoned(zone.clone()))?;
            next_match = Some(next_match.map_or(after.timestamp(), |t| t.min(after.timestamp())));
        }
        if let Some(covered_until) = covered_until {
            return Ok(State::Open { until: until.min(covered_until) });
        }
        let lifts = next_match.expect("allow is not empty and none covers `at`");
        Ok(State::Closed { closure: Closure::OutsideAllowWindows, lifts })
    }
}

enum State {
    /// Open at least until `until`.
    Open {
        until: Timestamp,
    },
    Closed {
        closure: Closure,
        lifts: Timestamp,
    },
}

/// The first cron match strictly after `from`.
fn next_occurrence(cron: &Cron, from: &Zoned) -> Result<Zoned, Error> {
    cron.find_next_occurrence(from, false).map_err(|error| Error::InvalidCron {
        cron: cron.pattern.to_string(),
        reason: error.to_string(),
    })
}

fn model_weekday(weekday: jiff::civil::Weekday) -> Weekday {
    use jiff::civil::Weekday as Civil;
    match weekday {
        Civil::Monday => Weekday::Monday,
        Civil::Tuesday => Weekday::Tuesday,
        Civil::Wednesday => Weekday::Wednesday,
        Civil::Thursday => Weekday::Thursday,
        Civil::Friday => Weekday::Friday,
        Civil::Saturday => Weekday::Saturday,
        Civil::Sunday => Weekday::Sunday,
    }
}

/// Whether deployments may start at `at`, and if not, why and when they next may.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `None` when open.
    pub closed_by: Option<Closure>,
    /// When the window set next opens: `at` itself when open; `None` when it does not open
    /// within [`WINDOW_SEARCH_HORIZON_DAYS`].
    pub next_open: Option<Timestamp>,
    /// Until when this verdict holds at least: the next opening when closed, a lower bound on
    /// the closing when open. Callers may cache the verdict until then.
    pub holds_until: Option<Timestamp>,
}

impl CompiledWindows {
    /// Evaluates the window set at `at`, searching forward for the next opening when closed.
    pub fn verdict(&self, at: Timestamp) -> Result<Verdict, Error> {
        let (closed_by, mut candidate) = match self.state(at)? {
            State::Open { until } => {
                return Ok(Verdict {
                    closed_by: None,
                    next_open: Some(at),
                    holds_until: Some(until),
                });
            }
            State::Closed { closure, lifts } => (closure, lifts),
        };
        let horizon = at + SignedDuration::from_hours(24 * WINDOW_SEARCH_HORIZON_DAYS);
        for _ in 0..WINDOW_SEARCH_STEPS {
            if candidate > horizon {
                break;
            }
            match self.closure(candidate)? {
                None => {
                    return Ok(Verdict {
                        closed_by: Some(closed_by),
                        next_open: Some(candidate),
                        holds_until: Some(candidate),
                    });
                }
                Some((_, lifts)) => {
                    candidate = lifts.max(candidate + SignedDuration::from_secs(1));
                }
            }
        }
        Ok(Verdict { closed_by: Some(closed_by), next_open: None, holds_until: Some(horizon) })
    }
}

/// One-shot form of [`CompiledWindows::verdict`].
pub fn verdict(
    windows: &TimeWindows,
    region_zone: &TimeZone,
    at: Timestamp,
) -> Result<Verdict, Error> {
    CompiledWindows::new(windows, region_zone.clone())?.verdict(at)
}

#[cfg(test)]
mod tests {
    use gantry_model::Duration;
    use gantry_model::pipeline::{AllowWindow, Holidays};

    use super::*;

    /// Evaluates `windows` in `zone` at the local time `at` and compares "open" or
    /// "closed: <reason>; opens <local time>" with `expected`.
    fn check(windows: &TimeWindows, zone: &str, at: &str, expected: &str) {
        let tz = TimeZone::get(zone).unwrap();
        let local: jiff::civil::DateTime = at.parse().unwrap();
        let instant = local.to_zoned(tz.clone()).unwrap().timestamp();
        let verdict = verdict(windows, &tz, instant).unwrap();
        let got = match (&verdict.closed_by, verdict.next_open) {
            (None, _) => "open".to_string(),
            (Some(closure), Some(next)) => {
                let next = next.to_zoned(tz.clone());
                format!("closed: {closure}; opens {} {}", next.datetime(), next.offset())
            }
            (Some(closure), None) => format!("closed: {closure}; never opens"),
        };
        assert_eq!(got, expected, "{zone} at {at}");
    }

    fn business_hours() -> TimeWindows {
        TimeWindows {
            allow: vec![AllowWindow {
                cron: "0 9 * * MON-FRI".into(),
                duration: Duration::from_hours(8),
                time_zone: None,
            }],
            holidays: Holidays { dates: vec!["2026-12-25".parse().unwrap()], calendars: vec![] },
            exclude_weekdays: vec![Weekday::Friday],
            not_before: None,
            not_after: Some("15:00".parse().unwrap()),
        }
    }

    #[test]
    fn business_hours_in_the_region_zone() {
        let w = business_hours();
        check(&w, "America/New_York", "2026-11-24T10:00", "open");
        check(
            &w,
            "America/New_York",
            "2026-11-24T08:59",
            "closed: outside every allow window; opens 2026-11-24T09:00:00 -05",
        );
        check(
            &w,
            "America/New_York",
            "2026-11-24T15:00",
            "closed: at or after 15:00:00 local time; opens 2026-11-25T09:00:00 -05",
        );
        // Friday 16:00 waits for Monday's window.
        check(
            &w,
            "America/New_York",
            "2026-11-27T16:00",
            "closed: no deployments start on Friday; opens 2026-11-30T09:00:00 -05",
        );
        check(
            &w,
            "Europe/Berlin",
            "2026-11-28T12:00",
            "closed: outside every allow window; opens 2026-11-30T09:00:00 +01",
        );
        // Christmas is a Friday; Thursday 24th after 15:00 waits for Monday the 28th.
        check(
            &w,
            "Asia/Tokyo",
            "2026-12-24T15:30",
            "closed: at or after 15:00:00 local time; opens 2026-12-28T09:00:00 +09",
        );
        check(
            &w,
            "Asia/Tokyo",
            "2026-12-25T10:00",
            "closed: 2026-12-25 is a holiday; opens 2026-12-28T09:00:00 +09",
        );
    }

    #[test]
    fn empty_allow_means_any_time_less_exclusions() {
        let w =
            TimeWindows { not_before: Some("09:30".parse().unwrap()), ..TimeWindows::default() };
        check(&w, "UTC", "2026-11-21T23:00", "open");
        check(
            &w,
            "UTC",
            "2026-11-21T09:00",
            "closed: before 09:30:00 local time; opens 2026-11-21T09:30:00 +00",
        );
        let never = TimeWindows {
            exclude_weekdays: vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
                Weekday::Saturday,
                Weekday::Sunday,
            ],
            ..TimeWindows::default()
        };
        check(
            &never,
            "UTC",
            "2026-11-21T10:00",
            "closed: no deployments start on Saturday; never opens",
        );
    }

    #[test]
    fn daylight_saving_gaps_and_folds() {
        let nightly = |cron: &str| TimeWindows {
            allow: vec![AllowWindow {
                cron: cron.into(),
                duration: Duration::from_minutes(30),
                time_zone: None,
            }],
            ..TimeWindows::default()
        };
        // 02:30 does not exist on 2026-03-29 in Berlin: the window opens at 03:00 CEST instead.
        check(
            &nightly("30 2 * * *"),
            "Europe/Berlin",
            "2026-03-28T12:00",
            "closed: outside every allow window; opens 2026-03-29T03:00:00 +02",
        );
        // 02:30 happens twice on 2026-10-25: the window opens at the first, CEST one.
        check(
            &nightly("30 2 * * *"),
            "Europe/Berlin",
            "2026-10-25T01:00",
            "closed: outside every allow window; opens 2026-10-25T02:30:00 +02",
        );
        // A window's own zone wins over the region's: 09:00 New York is 15:00 Berlin in winter.
        let new_york = TimeWindows {
            allow: vec![AllowWindow {
                cron: "0 9 * * *".into(),
                duration: Duration::from_hours(1),
                time_zone: Some("America/New_York".into()),
            }],
            ..TimeWindows::default()
        };
        check(&new_york, "Europe/Berlin", "2026-11-24T15:30", "open");
        check(
            &new_york,
            "Europe/Berlin",
            "2026-11-24T16:00",
            "closed: outside every allow window; opens 2026-11-25T15:00:00 +01",
        );
    }

    #[test]
    fn invalid_windows_are_errors() {
        let w = TimeWindows {
            allow: vec![AllowWindow {
                cron: "61 * * * *".into(),
                duration: Duration::from_hours(1),
                time_zone: None,
            }],
            ..TimeWindows::default()
        };
        assert!(matches!(
            verdict(&w, &TimeZone::UTC, Timestamp::UNIX_EPOCH),
            Err(Error::InvalidCron { .. })
        ));
    }
}
