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
    let calendar: icalendar::Calendar =
        text.parse().map_err(|error: String| format!("not valid iCalendar: {}", error.trim()))?;
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
