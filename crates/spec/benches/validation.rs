//! Validation time against input size: a valid pipeline, then the inputs that used to be slow —
//! a huge unknown key (the "did you mean" search) and a huge value (echoed in the message) — at
//! sizes from 1 KiB to 1 MiB, each loaded from a file as `gantry validate` does.
//! Prints one line per case: `cargo bench -p gantry-spec`.

use std::path::Path;
use std::time::Instant;

const TOPOLOGY: &str = "\
regions:
  - {name: small-1, traffic: 10, time_zone: Europe/Dublin, zones: [{name: s1a}, {name: s1b}]}
  - {name: big-1, traffic: 99, time_zone: America/New_York, zones: [{name: b1a}, {name: b1b}]}
";

const PIPELINE: &str = "\
topology: topology.yaml
pipeline: svc-code
team: platform
service: svc
kind: code
sources: [{repository: /srv/git/service}]
build: {command: make, outputs: [out/service]}
waves: [{lowest_traffic: 1}, {rest: true}]
";

/// Loads `text` as a pipeline `repeats` times; returns the mean time in milliseconds and the
/// size of the message.
fn measure(directory: &Path, text: &str, repeats: u32) -> (f64, usize) {
    let path = directory.join("pipeline.yaml");
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    let mut message = 0;
    for _ in 0..repeats {
        message = match gantry_spec::load(&path) {
            Ok(_) => 0,
            Err(errors) => errors.to_string().len(),
        };
    }
    (started.elapsed().as_secs_f64() * 1000.0 / f64::from(repeats), message)
}

fn main() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("topology.yaml"), TOPOLOGY).unwrap();
    let (valid, _) = measure(directory.path(), PIPELINE, 100);
    println!("{:<28} {:>10} {:>12} {:>14}", "case", "input", "ms/load", "message bytes");
    println!("{:<28} {:>10} {:>12.3} {:>14}", "valid pipeline", PIPELINE.len(), valid, 0);
    for kib in [1usize, 16, 256, 1024] {
        let size = kib * 1024;
        let repeats = if kib >= 256 { 5 } else { 20 };
        // An explicit key (`? ...`): YAML's implicit keys stop at 1024 characters.
        let key = format!("{PIPELINE}? bak{}\n: 1\n", "e".repeat(size));
        let (time, message) = measure(directory.path(), &key, repeats);
        println!(
            "{:<28} {:>10} {:>12.3} {:>14}",
            format!("unknown key of {kib} KiB"),
            key.len(),
            time,
            message
        );
        let value = format!("{PIPELINE}kind: {}\n", "x".repeat(size));
        let (time, message) = measure(directory.path(), &value, repeats);
        println!(
            "{:<28} {:>10} {:>12.3} {:>14}",
            format!("bad value of {kib} KiB"),
            value.len(),
            time,
            message
        );
    }
}
