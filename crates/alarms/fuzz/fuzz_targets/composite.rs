//! Any text either parses into a rule whose canonical form parses back to the same rule, or is
//! refused with a column inside the text (or just past it); nothing panics.

#![no_main]

use gantry_alarms::AlarmState;
use gantry_alarms::composite::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text) {
        Ok(rule) => {
            let canonical = rule.to_string();
            assert_eq!(parse(&canonical).as_ref(), Ok(&rule), "{canonical}");
            let names = rule.alarm_names();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), names.len());
            rule.holds(&mut |name| if name.len() % 2 == 0 { AlarmState::Alarm } else { AlarmState::Ok });
        }
        Err(error) => {
            let length = text.chars().count();
            assert!(error.column >= 1 && error.column <= length.max(10_240) + 1, "{error}");
        }
    }
});
