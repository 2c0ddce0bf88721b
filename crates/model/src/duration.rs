//! Durations as people write them in pipeline files: `90s`, `30m`, `1h30m`, `2d`.
//!
//! A [`Duration`] is a whole number of seconds. The text form is one or more `<number><unit>`
//! pairs with units `d`, `h`, `m`, `s`, largest first; it is also the form Gantry prints.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time with second precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    seconds: u64,
}

/// The longest duration a pipeline may declare: one year. Longer bakes or timeouts are typos.
pub const MAX_DURATION_SECONDS: u64 = 366 * 24 * 3600;

impl Duration {
    pub const ZERO: Duration = Duration { seconds: 0 };

    pub const fn from_seconds(seconds: u64) -> Duration {
        Duration { seconds }
    }
    pub const fn from_minutes(minutes: u64) -> Duration {
        Duration::from_seconds(minutes * 60)
    }
    pub const fn from_hours(hours: u64) -> Duration {
        Duration::from_seconds(hours * 3600)
    }
    pub const fn as_seconds(self) -> u64 {
        self.seconds
    }
}

/// Why a duration's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason} (write e.g. `90s`, `30m`, `1h30m` or `2d`)")]
pub struct DurationError {
    pub text: String,
    pub reason: &'static str,
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let fail = |reason| DurationError { text: text.to_string(), reason };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut seconds: u64 = 0;
        let mut last_unit_rank = usize::MAX;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(fail("expected a number"));
            }
            let number: u64 = rest[..digits].parse().map_err(|_| fail("number too large"))?;
            rest = &rest[digits..];
            let unit_length = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (rank, unit_seconds) = match &rest[..unit_length] {
                "" => return Err(fail("a number needs a unit (d, h, m or s)")),
                "d" => (0, 86_400),
                "h" => (1, 3_600),
                "m" => (2, 60),
                "s" => (3, 1),
                _ => return Err(fail("unknown unit; use d, h, m or s")),
            };
            if last_unit_rank != usize::MAX && rank <= last_unit_rank {
                return Err(fail("units must go from largest to smallest, each once"));
            }
            last_unit_rank = rank;
            rest = &rest[unit_length..];
            seconds = number
                .checked_mul(unit_seconds)
                .and_then(|part| seconds.checked_add(part))
                .ok_or_else(|| fail("too long"))?;
        }
        if seconds > MAX_DURATION_SECONDS {
            return Err(fail("longer than a year"));
        }
        Ok(Duration { seconds })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.seconds;
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
            "description": "A duration such as `90s`, `30m`, `1h30m` or `2d`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<u64, &str>) {
        let got = text.parse::<Duration>().map(Duration::as_seconds).map_err(|e| e.reason);
        assert_eq!(got, expected, "parsing {text:?}");
    }

    #[test]
    fn parses_and_refuses() {
        check("90s", Ok(90));
        check("30m", Ok(1800));
        check("1h30m", Ok(5400));
        check("2d", Ok(172_800));
        check("0s", Ok(0));
        check("", Err("it is empty"));
        check("10", Err("a number needs a unit (d, h, m or s)"));
        check("1w", Err("unknown unit; use d, h, m or s"));
        check("30m1h", Err("units must go from largest to smallest, each once"));
        check("1h1h", Err("units must go from largest to smallest, each once"));
        check("h", Err("expected a number"));
        check("4hours", Err("unknown unit; use d, h, m or s"));
        check("1h 30m", Err("expected a number"));
        check("400d", Err("longer than a year"));
        check("99999999999999999999s", Err("number too large"));
    }

    #[test]
    fn prints_what_it_parses() {
        for text in ["90s", "1h30m", "2d", "1d2h3m4s", "0s"] {
            let printed = text.parse::<Duration>().unwrap().to_string();
            let normal = if text == "90s" { "1m30s" } else { text };
            assert_eq!(printed, normal);
        }
    }
}
