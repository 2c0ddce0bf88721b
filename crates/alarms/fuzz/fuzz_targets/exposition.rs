//! Any text either parses into samples the store accepts in one scrape, or is refused with a
//! line and column; nothing panics.

#![no_main]

use gantry_alarms::exposition::{ExpositionLimits, parse};
use gantry_alarms::push::ingest;
use gantry_alarms::series::{Labels, Store, StoreLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = ExpositionLimits::default();
    match parse(text, &limits) {
        Ok(samples) => {
            assert!(samples.len() <= limits.max_samples);
            let mut store = Store::new(StoreLimits::default());
            // A counter's NaN or negative value is refused by the store, never a panic.
            let _ = ingest(&mut store, &samples, &Labels::new(), 1_000);
        }
        Err(error) => assert!(error.line >= 1 && error.column >= 1, "{error}"),
    }
});
