//! Package versions as lock files write them, and the ranges content blockers match against.
//!
//! One ordering serves every ecosystem Gantry reads (Cargo and npm semver, PyPI, Go modules):
//! a version is split into runs of digits and runs of letters; digits compare as numbers,
//! letters as text, and a trailing letter run marks a pre-release (`1.0.0-rc.1 < 1.0.0`) except
//! PyPI's `post` (`1.0.post1 > 1.0`). A leading `v` (Go) and `+build` metadata are ignored.
//! A range is a comma-separated list of comparators that must all hold: `>=1.2, <1.4.2`,
//! `=0.3.1`, `!=2.0.0`, or `*` for every version.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest version or range text accepted; real ones are a few dozen characters.
pub const MAX_VERSION_TEXT: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Number(u64),
    Word(String),
}

/// A parsed version.
#[derive(Clone, Debug, Eq)]
pub struct Version {
    text: String,
    tokens: Vec<Token>,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.len() > MAX_VERSION_TEXT {
            return None;
        }
        let core = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let core = core.split('+').next().unwrap_or(core);
        let mut tokens = Vec::new();
        let mut rest = core;
        while let Some(start) = rest.find(|c: char| c.is_ascii_alphanumeric()) {
            rest = &rest[start..];
            let digits = rest.starts_with(|c: char| c.is_ascii_digit());
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric() || c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let run = &rest[..end];
            tokens.push(if digits {
                Token::Number(run.parse().ok()?)
            } else {
                Token::Word(run.to_ascii_lowercase())
            });
            rest = &rest[end..];
        }
        if !matches!(tokens.first(), Some(Token::Number(_))) {
            return None;
        }
        Some(Version { text: trimmed.to_string(), tokens })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        for index in 0..self.tokens.len().max(other.tokens.len()) {
            let ordering = match (self.tokens.get(index), other.tokens.get(index)) {
                (Some(Token::Number(a)), Some(Token::Number(b))) => a.cmp(b),
                (Some(Token::Word(a)), Some(Token::Word(b))) => a.cmp(b),
                (Some(Token::Number(_)), Some(Token::Word(_))) => Ordering::Greater,
                (Some(Token::Word(_)), Some(Token::Number(_))) => Ordering::Less,
                (Some(extra), None) => tail_ordering(extra),
                (None, Some(extra)) => tail_ordering(extra).reverse(),
                (None, None) => Ordering::Equal,
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }
}

/// How a version with one more token compares with the version it extends.
fn tail_ordering(extra: &Token) -> Ordering {
    match extra {
        Token::Number(0) => Ordering::Equal,
        Token::Number(_) => Ordering::Greater,
        Token::Word(word) if word == "post" => Ordering::Greater,
        Token::Word(_) => Ordering::Less,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Equal,
    NotEqual,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

/// A set of versions: every comparator must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRange {
    text: String,
    comparators: Vec<(Operator, Version)>,
}

/// Why a range was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid version range {text:?}: {reason} (write e.g. `>=1.2.0, <1.2.5`, `=0.3.1` or `*`)")]
pub struct RangeError {
    pub text: String,
    pub reason: String,
}

impl VersionRange {
    /// Whether `version` is in the range. A version that does not parse is in every range:
    /// a blocker fails closed rather than letting an unreadable version through.
    pub fn contains(&self, version: &str) -> bool {
        let Some(version) = Version::parse(version) else { return true };
        self.comparators.iter().all(|(operator, bound)| match operator {
            Operator::Equal => version == *bound,
            Operator::NotEqual => version != *bound,
            Operator::Greater => version > *bound,
            Operator::GreaterOrEqual => version >= *bound,
            Operator::Less => version < *bound,
            Operator::LessOrEqual => version <= *bound,
        })
    }
}

impl FromStr for VersionRange {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<VersionRange, RangeError> {
        let fail = |reason: String| RangeError { text: text.to_string(), reason };
        if text.len() > MAX_VERSION_TEXT {
            return Err(fail(format!("longer than {MAX_VERSION_TEXT} characters")));
        }
        let mut comparators = Vec::new();
        if text.trim() != "*" {
            for part in text.split(',') {
                let part = part.trim();
                let (operator, rest) = [
                    ("==", Operator::Equal),
                    ("!=", Operator::NotEqual),
                    (">=", Operator::GreaterOrEqual),
                    ("<=", Operator::LessOrEqual),
                    (">", Operator::Greater),
                    ("<", Operator::Less),
                    ("=", Operator::Equal),
                ]
                .iter()
                .find_map(|(symbol, operator)| {
                    part.strip_prefix(symbol).map(|rest| (*operator, rest))
                })
                .unwrap_or((Operator::Equal, part));
                let version = Version::parse(rest)
                    .ok_or_else(|| fail(format!("{:?} is not a version", rest.trim())))?;
                comparators.push((operator, version));
            }
        }
        Ok(VersionRange { text: text.trim().to_string(), comparators })
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for VersionRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<VersionRange, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_versions() {
        let ascending = [
            "0.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-beta",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.0.post1",
            "1.0.1",
            "1.2.3rc1",
            "1.2.3",
            "v1.10.0",
            "2.0.0+incompatible",
            "10.0.0",
        ];
        for pair in ascending.windows(2) {
            let (a, b) = (Version::parse(pair[0]).unwrap(), Version::parse(pair[1]).unwrap());
            assert!(a < b, "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(Version::parse("v1.2.0"), Version::parse("1.2.0"));
        assert_eq!(Version::parse("1.2"), Version::parse("1.2.0"));
        assert_eq!(Version::parse("1.2.0+build5"), Version::parse("1.2.0"));
        assert!(Version::parse("latest").is_none());
    }

    fn check(range: &str, version: &str, expected: bool) {
        let parsed: VersionRange = range.parse().unwrap();
        assert_eq!(parsed.contains(version), expected, "{version} in {range}");
    }

    #[test]
    fn ranges_contain() {
        check("*", "0.0.1", true);
        check("=1.2.3", "1.2.3", true);
        check("==1.2.3", "1.2.4", false);
        check("1.2.3", "v1.2.3", true);
        check(">=1.2.0, <1.2.5", "1.2.4", true);
        check(">=1.2.0, <1.2.5", "1.2.5", false);
        check(">=1.2.0, <1.2.5", "1.1.9", false);
        check(">=1.2.0, <1.2.5", "1.2.5-rc.1", true);
        check("!=2.0.0", "2.0.0", false);
        check("<=0.3", "0.3.0", true);
        check(">1", "not-a-version", true);
    }

    #[test]
    fn refuses_bad_ranges() {
        for bad in ["", ">=", ">=1.0,", "~>x", &"1".repeat(300)] {
            assert!(bad.parse::<VersionRange>().is_err(), "{bad:?}");
        }
    }
}
