//! The three states of an alarm, by CloudWatch's names. The type lives in `gantry-model`, so the
//! alarm engine, the deployment engine and the API speak one `AlarmState`.

pub use gantry_model::AlarmState;
