//! A real `gantry server` for the CLI's process tests: started on a free loopback port, ready
//! once it prints the address it bound, killed when its guard drops.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process killed (`kill -9`) when dropped, whatever the test's outcome.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gantry server` on `data`; returns its guard and its URL.
pub fn start_server(data: &Path) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["server", "--data-dir"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Ready when it prints the address it bound.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (Process(child), url)
}
