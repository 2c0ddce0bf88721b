//! The three states of an alarm, by CloudWatch's names: one type for the alarm engine that
//! computes them, the deployment engine that acts on them, and the API that shows them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An alarm's state. A new alarm starts in `InsufficientData`. Serialized by CloudWatch's names.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    /// The alarm's condition does not hold.
    Ok,
    /// The alarm's condition holds: roll back, or block.
    Alarm,
    /// Not enough data to decide. Never counts as healthy.
    InsufficientData,
}

impl AlarmState {
    /// CloudWatch's name for the state: `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub fn name(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::AlarmState;

    #[test]
    fn serializes_by_cloudwatch_names() {
        for state in [AlarmState::Ok, AlarmState::Alarm, AlarmState::InsufficientData] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.name()));
            assert_eq!(serde_json::from_str::<AlarmState>(&json).unwrap(), state);
        }
    }
}
