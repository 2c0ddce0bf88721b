//! Holiday calendars from iCalendar (`.ics`) files: every day covered by a VEVENT is a holiday.
//!
//! All-day events (`DTSTART;VALUE=DATE`) cover their days up to, not including, `DTEND`; events
//! with a time cover the day they start on. Recurring events (`RRULE`) are refused rather than
//! half-understood: list each year's date instead.

use std::path::Path;

use icalendar::{CalendarComponent, Component, DatePerhapsTime};
use jiff::civil::Date;

/// A holiday calendar spanning more days than this is a mistake (a multi-year event).
const MAX_DAYS_PER_EVENT: i64 = 366;

/// Reads the holiday dates of an `.ics` file, sorted and without duplicates.
pub fn read_dates(path: &Path) -> Result<Vec<Date>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!("cannot read the holiday calendar `{}`: {error}", path.display())
    })?;
    parse_dates(&text)
        .map_err(|message| format!("holiday calendar `{}`: {message}", path.display()))
}

pub fn parse_dates(text: &str) -> Result<Vec<Date>, String> {
    check_lines(text)?;
    // The parser's own errors describe its internals, not the file: `check_lines` has found
    // what a person can fix, so what is left is said plainly.
    let calendar: icalendar::Calendar = text.parse().map_err(|_: String| {
        "not valid iCalendar (RFC 5545); check it with a calendar application".to_string()
    })?;
    let mut dates = Vec::new();
    for component in &calendar.components {
        let CalendarComponent::Event(event) = component else { continue };
        let summary = event.get_summary().unwrap_or("an event").to_string();
        if event.property_value("RRULE").is_some() {
            return Err(format!("`{summary}` recurs (RRULE); list each holiday's date instead"));
        }
        let start = event
            .get_start()
            .ok_or_else(|| format!("`{summary}` has no DTSTART"))
            .and_then(|start| {
                to_date(&start)
                    .ok_or_else(|| format!("`{summary}` has a DTSTART that is not a date"))
            })?;
        let end = match event.get_end() {
            Some(DatePerhapsTime::Date(end)) => to_date(&DatePerhapsTime::Date(end))
                .ok_or_else(|| format!("`{summary}` has a bad DTEND"))?,
            _ => start.tomorrow().map_err(|error| error.to_string())?,
        };
        let days = start.until(end).map_err(|error| error.to_string())?.get_days() as i64;
        if days > MAX_DAYS_PER_EVENT {
            return Err(format!(
                "`{summary}` lasts {days} days; a holiday calendar event should cover days, not years"
            ));
        }
        let mut day = start;
        while day < end {
            dates.push(day);
            day = day.tomorrow().map_err(|error| error.to_string())?;
        }
        if end <= start {
            dates.push(start);
        }
    }
    dates.sort();
    dates.dedup();
    Ok(dates)
}

/// The structure RFC 5545 requires of every content line, checked before the parser runs so
/// an error names a line of the file: `NAME[;PARAM=...]:VALUE` (folded lines continue with a
/// space or tab), inside one `BEGIN:VCALENDAR` ... `END:VCALENDAR`, components nested properly.
fn check_lines(text: &str) -> Result<(), String> {
    /// Components nested deeper than this are not a holiday calendar (VCALENDAR > VEVENT >
    /// VALARM is three); the limit bounds the stack of open components.
    const MAX_NESTING: usize = 8;
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut seen_calendar = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let at = |message: String| format!("line {number}: {message}");
        if line.starts_with([' ', '\t']) {
            if number == 1 {
                return Err(at("a continuation line with nothing to continue".to_string()));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some((head, value)) = line.split_once(':') else {
            return Err(at(format!(
                "`{}` is not a content line `NAME:VALUE`",
                crate::diagnostic::echo(line)
            )));
        };
        let name = head.split(';').next().unwrap_or_default();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(at(format!(
                "`{}` is not a property name (letters, digits and `-`)",
                crate::diagnostic::echo(name)
            )));
        }
        if seen_calendar && open.is_empty() {
            return Err(at("content after `END:VCALENDAR`".to_string()));
        }
        let component = value.trim().to_ascii_uppercase();
        match name.to_ascii_uppercase().as_str() {
            "BEGIN" => {
                if open.is_empty() && component != "VCALENDAR" {
                    return Err(at(format!("`BEGIN:{component}` outside `BEGIN:VCALENDAR`")));
                }
                if open.len() == MAX_NESTING {
                    return Err(at(format!("components nested deeper than {MAX_NESTING}")));
                }
                seen_calendar = true;
                open.push((component, number));
            }
            "END" => match open.pop() {
                Some((begun, _)) if begun == component => {}
                Some((begun, line)) => {
                    return Err(at(format!(
                        "`END:{component}` closes `BEGIN:{begun}` of line {line}"
                    )));
                }
                None => return Err(at(format!("`END:{component}` without a `BEGIN`"))),
            },
            _ if open.is_empty() => {
                return Err(at("a property outside `BEGIN:VCALENDAR`".to_string()));
            }
            _ => {}
        }
    }
    match open.last() {
        Some((component, line)) => {
            Err(format!("line {line}: `BEGIN:{component}` is never closed with `END:{component}`"))
        }
        None if !seen_calendar => Err("no `BEGIN:VCALENDAR`: not an iCalendar file".to_string()),
        None => Ok(()),
    }
}

fn to_date(value: &DatePerhapsTime) -> Option<Date> {
    let text = match value {
        DatePerhapsTime::Date(date) => date.to_string(),
        DatePerhapsTime::DateTime(date_time) => {
            let text = format!("{date_time:?}");
            // The naive and UTC forms both print their date first as YYYY-MM-DD.
            let start = text.find(|c: char| c.is_ascii_digit())?;
            text.get(start..start + 10)?.to_string()
        }
    };
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, expected: Result<&[&str], &str>) {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Gantry//test//EN\r\n{body}END:VCALENDAR\r\n"
        );
        let got = parse_dates(&text)
            .map(|dates| dates.iter().map(ToString::to_string).collect::<Vec<_>>());
        let expected = expected
            .map(|dates| dates.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(str::to_string);
        assert_eq!(got, expected);
    }

    #[test]
    fn all_day_events_cover_their_days() {
        check(
            "BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261227\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:2\r\nSUMMARY:New Year\r\nDTSTART;VALUE=DATE:20270101\r\nEND:VEVENT\r\n",
            Ok(&["2026-12-25", "2026-12-26", "2027-01-01"]),
        );
    }

    #[test]
    fn malformed_calendars_name_the_line() {
        let cases = [
            (
                "BEGIN:VEVENT\r\nUID:1\r\nDTSTART;VALUE=DATE:20261225\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                "line 1: `BEGIN:VEVENT` outside `BEGIN:VCALENDAR`",
            ),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART 20261225\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                "line 3: `DTSTART 20261225` is not a content line `NAME:VALUE`",
            ),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nEND:VCALENDAR\r\n",
                "line 4: `END:VCALENDAR` closes `BEGIN:VEVENT` of line 2",
            ),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\n",
                "line 2: `BEGIN:VEVENT` is never closed with `END:VEVENT`",
            ),
            ("", "no `BEGIN:VCALENDAR`: not an iCalendar file"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_dates(text), Err(expected.to_string()), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_expand() {
        check(
            "BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20261225\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\n",
            Err("`Christmas` recurs (RRULE); list each holiday's date instead"),
        );
        check(
            "BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Odd\r\nEND:VEVENT\r\n",
            Err("`Odd` has no DTSTART"),
        );
    }
}
