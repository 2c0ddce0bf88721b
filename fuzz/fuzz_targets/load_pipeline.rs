//! Feeds arbitrary bytes to the pipeline loader as a definition file. The loader must load them
//! or refuse them with diagnostics; a panic, hang or crash is a bug.
//!
//! Run with `cargo fuzz run load_pipeline` from this directory (see docs/pipelines.md).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use gantry_model::Topology;
use libfuzzer_sys::fuzz_target;

fn topology() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/topology.yaml");
        gantry_spec::load_topology_file(&path).expect("the example topology is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gantry_spec::load_text(text, Path::new("/nonexistent/fuzz.yaml"), Some(topology()));
    }
});
