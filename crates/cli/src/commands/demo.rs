//! `gantry demo`: routes to `gantry_fleet::demo` and presents its narrative, one line per step
//! on stderr, and with `--once` a one-line summary last on stdout. Ctrl-C raises the demo's stop
//! flag, so it stops the traffic, the fleet and the controller before exiting.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gantry_fleet::demo::{self, DemoConfig, Narrative};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Run the story once without a terminal: exit 0 only if the good change reached every box
    /// and the bad one was rolled back at its one box.
    #[arg(long)]
    once: bool,
    /// The demo's working directory (controller data, fleet, repository); a fresh temporary
    /// directory when not given.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The repository's examples directory (demo/ and sample-service/ under it).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"))]
    examples: PathBuf,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let (dir, _temporary) = match args.dir {
        Some(dir) => (dir, None),
        None => {
            let temporary =
                std::env::temp_dir().join(format!("gantry-demo-{}", std::process::id()));
            (temporary.clone(), Some(RemoveOnDrop(temporary)))
        }
    };
    let config = DemoConfig { gantry: std::env::current_exe()?, examples: args.examples, dir };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Ok(runtime) = runtime
            && runtime.block_on(tokio::signal::ctrl_c()).is_ok()
        {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let mut say = |step: Narrative| eprintln!("demo: {step}");
    let result = demo::run(&config, &stop, &mut say);
    if stop.load(Ordering::SeqCst) {
        eprintln!("demo: stopped by Ctrl-C; nothing left running");
        return Ok(ExitCode::from(130));
    }
    match result {
        // Both outcomes, or the demo did not show what it is for.
        Ok(demo::Outcome { good_everywhere: Some(good), bad_rolled_back: Some(bad) }) => {
            println!(
                "demo passed: good change {good} everywhere; bad change {bad} rolled back at its one box"
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(outcome) => {
            let missing = if outcome.good_everywhere.is_none() {
                "the good change never reached every box"
            } else {
                "the bad change was never rolled back"
            };
            println!("demo failed: {missing}");
            Err(anyhow::anyhow!("{missing}"))
        }
        Err(error) => {
            if args.once {
                println!("demo failed: {error}");
            }
            Err(anyhow::anyhow!(error))
        }
    }
}

/// Removes the temporary demo directory when the demo ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
