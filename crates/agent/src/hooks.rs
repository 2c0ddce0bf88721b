//! Runs one hook script the way CodeDeploy's agent does: made executable if it is not, in its
//! own process group, with the agent's environment plus `LIFECYCLE_EVENT`, `DEPLOYMENT_ID`,
//! `APPLICATION_NAME`, `DEPLOYMENT_GROUP_NAME` and `DEPLOYMENT_GROUP_ID`, as the `runas` user when
//! one is named, with stdout and stderr appended to the deployment's script log.
//!
//! A script that outlives its deadline has its whole process group sent SIGTERM, then SIGKILL
//! after [`KILL_GRACE`]; a script that exits leaves its group alone, because ApplicationStart
//! scripts commonly leave the service running in the background. Gantry runs scripts with the
//! revision's root as working directory (CodeDeploy leaves the agent's).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::appspec::{LifecycleEvent, Script};

/// How long a timed-out script's group has between SIGTERM and SIGKILL: enough to exit cleanly,
/// short enough that a hung box fails promptly.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long a killed group may take to disappear; exited processes not yet reaped by init keep a
/// group signalable, so this bounds the wait rather than waiting for them.
pub const GROUP_EXIT_WAIT: Duration = Duration::from_secs(1);
/// How much of the script log a failure carries: the same 2 KiB CodeDeploy reports.
pub const FAILURE_LOG_TAIL_BYTES: u64 = 2048;
/// Switches to the `runas` user (util-linux): sets the real and effective ids and the user's
/// supplementary groups, then execs the script, so the script keeps its process group.
const SETPRIV: &str = "setpriv";

/// The deployment's identity, given to every script in CodeDeploy's environment variables.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HookEnvironment {
    /// `APPLICATION_NAME`: the service.
    pub application_name: String,
    /// `DEPLOYMENT_ID`: the controller's id of this deployment to this box.
    pub deployment_id: String,
    /// `DEPLOYMENT_GROUP_NAME`: the target.
    pub deployment_group_name: String,
    /// `DEPLOYMENT_GROUP_ID`: the target's stable id.
    pub deployment_group_id: String,
    /// Variables the agent's operator adds to every hook (a Gantry extension), such as the port
    /// a local fleet's box serves on; CodeDeploy's five always win over them.
    #[serde(default)]
    pub box_variables: std::collections::BTreeMap<String, String>,
}

/// Why a script failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookFailure {
    #[error("the script does not exist at {0}")]
    Missing(String),
    #[error("the script could not be made executable or started: {0}")]
    NotStarted(String),
    #[error("exited with code {0}")]
    Exited(i32),
    #[error("was killed by signal {0}")]
    Signalled(i32),
    #[error("did not finish within its appspec timeout of {0} s; its process group was killed")]
    ScriptTimeout(u64),
    #[error(
        "did not finish before its lifecycle event's {0} s for all its scripts ran out; its process group was killed"
    )]
    EventTimeout(u64),
    #[error(
        "did not finish before the pipeline's hook_timeout of {0} s for the whole lifecycle ran out; its process group was killed"
    )]
    LifecycleTimeout(u64),
}

/// A moment a script must finish by, and the failure it meets if it does not.
#[derive(Clone, Debug)]
pub struct Deadline {
    pub at: Instant,
    pub failure: HookFailure,
}

/// Runs `script` of `event` from `bundle`, appending its output to `log`.
pub fn run(
    bundle: &Path,
    event: LifecycleEvent,
    script: &Script,
    environment: &HookEnvironment,
    deadlines: &[Deadline],
    log: &Path,
) -> Result<(), HookFailure> {
    let path = bundle.join(&script.location);
    if !path.is_file() {
        return Err(HookFailure::Missing(path.display().to_string()));
    }
    make_executable(&path).map_err(|e| HookFailure::NotStarted(e.to_string()))?;
    let mut log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| HookFailure::NotStarted(format!("{}: {e}", log.display())))?;
    let _ = writeln!(
        log_file,
        "{} LifecycleEvent - {event}\n{} Script - {}",
        jiff::Timestamp::now(),
        jiff::Timestamp::now(),
        script.location
    );
    let mut command = command_for(&path, script.runas.as_deref())?;
    let stderr = log_file.try_clone().map_err(|e| HookFailure::NotStarted(e.to_string()))?;
    command
        .current_dir(bundle)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        .envs(&environment.box_variables)
        .env("LIFECYCLE_EVENT", event.name())
        .env("DEPLOYMENT_ID", &environment.deployment_id)
        .env("APPLICATION_NAME", &environment.application_name)
        .env("DEPLOYMENT_GROUP_NAME", &environment.deployment_group_name)
        .env("DEPLOYMENT_GROUP_ID", &environment.deployment_group_id);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| HookFailure::NotStarted(e.to_string()))?;
    let group = Pid::from_raw(child.id() as i32);

    // The script's own timeout, its event's and the lifecycle's: the first to run out counts.
    let own = Deadline {
        at: started + Duration::from_secs(script.timeout_seconds),
        failure: HookFailure::ScriptTimeout(script.timeout_seconds),
    };
    let first = deadlines.iter().chain([&own]).min_by_key(|d| d.at).expect("one at least");
    let (limit, failure) = (first.at, first.failure.clone());
    let (sender, receiver) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    let remaining = limit.saturating_duration_since(Instant::now());
    let status = match receiver.recv_timeout(remaining) {
        Ok(status) => status,
        Err(_) => {
            let _ = killpg(group, Signal::SIGTERM);
            if receiver.recv_timeout(KILL_GRACE).is_err() {
                let _ = killpg(group, Signal::SIGKILL);
            }
            // Whatever of the group ignored SIGTERM goes now, leader or not.
            let _ = killpg(group, Signal::SIGKILL);
            let _ = waiter.join();
            wait_until_gone(group);
            return Err(failure);
        }
    };
    let _ = waiter.join();
    let status = status.map_err(|e| HookFailure::NotStarted(e.to_string()))?;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(HookFailure::Exited(code)),
        (None, Some(signal)) => Err(HookFailure::Signalled(signal)),
        (None, None) => Err(HookFailure::Signalled(0)),
    }
}

/// Waits (at most [`GROUP_EXIT_WAIT`]) until no process of `group` is left to signal: SIGKILL is
/// delivered asynchronously, and a caller told "killed" must find nothing running.
fn wait_until_gone(group: Pid) {
    let until = Instant::now() + GROUP_EXIT_WAIT;
    while killpg(group, None).is_ok() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn command_for(path: &Path, runas: Option<&str>) -> Result<Command, HookFailure> {
    let Some(user_name) = runas else {
        return Ok(Command::new(path));
    };
    let user = nix::unistd::User::from_name(user_name).ok().flatten().ok_or_else(|| {
        HookFailure::NotStarted(format!("runas user {user_name:?} does not exist"))
    })?;
    let mut command = Command::new(SETPRIV);
    command
        .arg("--reuid")
        .arg(user.uid.as_raw().to_string())
        .arg("--regid")
        .arg(user.gid.as_raw().to_string())
        .arg("--init-groups")
        .arg("--")
        .arg(path)
        .env("HOME", &user.dir)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name);
    Ok(command)
}

fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o111 != 0o111 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o111))?;
    }
    Ok(())
}

/// The end of a script log, for a failure report.
pub fn log_tail(log: &Path) -> String {
    let Ok(mut file) = File::open(log) else { return String::new() };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(FAILURE_LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Where a deployment's script log lives.
pub fn log_path(logs: &Path, deployment_id: &str) -> PathBuf {
    logs.join(format!("{deployment_id}.log"))
}
