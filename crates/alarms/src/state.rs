//! The three states of an alarm, by CloudWatch's names.

use std::fmt;

/// An alarm's state. A new alarm starts in `InsufficientData`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
