//! Any bytes as a CloudFormation template or describe-alarms answer: the import never panics,
//! and every definition it writes is one the alarm set accepts.
#![no_main]

use gantry_alarms::alarm_set::AlarmSet;
use gantry_alarms::import::{ImportOptions, import};
use gantry_alarms::series::Labels;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let options = ImportOptions {
        region: Some("eu-west-1".to_string()),
        account: Some("111122223333".to_string()),
    };
    if let Ok(imported) = import(text, &options) {
        AlarmSet::new(&imported.definitions, Labels::new())
            .expect("imported definitions are accepted by the alarm set");
    }
});
