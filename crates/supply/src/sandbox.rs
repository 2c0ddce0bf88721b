//! The build sandbox: a command run with no network, no view of the host beyond an allow-list,
//! no capabilities, and a time limit that kills everything it started.
//!
//! - [`Sandbox::Bubblewrap`] (preferred): new user, mount, network, PID, IPC, UTS and cgroup
//!   namespaces. The filesystem is an allow-list: the toolchain ([`TOOLCHAIN_DIRS`], with the
//!   merged-/usr links), a minimal `/etc` ([`MINIMAL_ETC`]), a fresh `/dev`, `/proc` and `/tmp`,
//!   the pipeline's extra read-only paths, and the build's own directory at
//!   [`SANDBOX_BUILD_DIR`] — the only writable host path. No host socket is reachable: none is
//!   on the allow-list, and abstract sockets belong to the network namespace.
//! - [`Sandbox::Unshare`] (the weaker fallback): new mount, network and PID namespaces; the host's
//!   filesystem stays visible read-only, with `/tmp`, `/var/tmp`, `/run`, `/home`, `/root`,
//!   `/dev/shm`, `/mnt`, `/media` and `/srv` replaced by empty private directories, and the
//!   build's directory writable.
//!
//! In both the keys (every path in [`SandboxRun::hidden`], absolute) are covered by empty
//! mounts (by their real path), and failing to hide one stops the build. No file descriptor
//! the builder inherited reaches the build: all above stderr are closed on `exec`. Run by
//! root, the build runs as the unprivileged [`BUILD_UID`]:[`BUILD_GID`]; whoever starts it, it
//! has no capabilities and `no_new_privs`, so it cannot undo a mount or gain privileges
//! through a setuid program.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The most build output kept in the log: enough for any compiler error, bounded so a runaway
/// build cannot fill the store's disk.
pub const MAX_BUILD_LOG_BYTES: usize = 16 * 1024 * 1024;
/// How much of the log's end a failure message quotes.
pub const FAILURE_LOG_TAIL_BYTES: usize = 2048;
/// How often a running build is checked against its time limit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// `PATH` inside the sandbox: the system's tool directories, nothing from the caller's.
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the build's own directory appears inside the bubblewrap sandbox.
pub const SANDBOX_BUILD_DIR: &str = "/build";
/// The user and group builds run as when Gantry runs as root: Debian's `nobody`, which owns no
/// file that matters.
pub const BUILD_UID: u32 = 65534;
pub const BUILD_GID: u32 = 65534;
/// The toolchain a bubblewrap build sees, read-only: compilers, interpreters and libraries live
/// under `/usr` on a merged-/usr system. A pipeline that needs more names its read-only paths.
pub const TOOLCHAIN_DIRS: [&str; 1] = ["/usr"];
/// Top-level directories that a merged-/usr system links into `/usr`; recreated as the same
/// links inside, or bound read-only where the host has real directories.
const MERGED_USR_LINKS: [&str; 4] = ["/bin", "/lib", "/lib64", "/sbin"];
/// The `/etc` a bubblewrap build sees: the dynamic linker's cache and configuration, and the
/// alternatives links (`cc`, `c++`, `awk` on Debian). No users, hosts, resolver or secrets.
pub const MINIMAL_ETC: [&str; 4] =
    ["/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d"];
/// Host directories the unshare sandbox replaces with empty private ones: where homes, sockets
/// and shared scratch space live.
pub const UNSHARE_PRIVATE_DIRS: [&str; 9] =
    ["/tmp", "/var/tmp", "/run", "/home", "/root", "/dev/shm", "/mnt", "/media", "/srv"];

/// How a build is isolated from the machine it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sandbox {
    /// bubblewrap (`bwrap`) with an allow-list filesystem.
    Bubblewrap,
    /// util-linux `unshare`: the host's filesystem read-only, minus homes, sockets and scratch.
    Unshare,
}

impl Sandbox {
    /// bubblewrap when `bwrap` is on `PATH`, else `unshare`.
    pub fn detect() -> Sandbox {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("bwrap").is_file())
        });
        if found { Sandbox::Bubblewrap } else { Sandbox::Unshare }
    }

    /// The sandbox as the manifest and provenance record it.
    pub fn describe(self, network: bool) -> String {
        let base = match self {
            Sandbox::Bubblewrap => {
                "bwrap --unshare-all --cap-drop ALL; allow-list: /usr (read-only), minimal /etc, \
                 fresh /dev /proc /tmp, the build directory at /build (the only writable path)"
            }
            Sandbox::Unshare => {
                "unshare --net --pid --mount --fork --kill-child --mount-proc; host read-only \
                 without homes, /run or scratch directories; the build directory writable"
            }
        };
        let network = if network { "network allowed by the pipeline" } else { "no network" };
        let user = if running_as_root() {
            format!("run as uid {BUILD_UID} without capabilities, no_new_privs")
        } else {
            "run without capabilities, no_new_privs".to_string()
        };
        format!("{base}; {network}; {user}; environment cleared")
    }

    /// Where `path`, inside the build directory `workspace`, is seen from inside the sandbox.
    pub fn view(self, workspace: &Path, path: &Path) -> PathBuf {
        match (self, path.strip_prefix(workspace)) {
            (Sandbox::Bubblewrap, Ok(relative)) => Path::new(SANDBOX_BUILD_DIR).join(relative),
            _ => path.to_path_buf(),
        }
    }

    /// The program that starts the sandbox (the first word of its command).
    fn program(self) -> &'static str {
        match self {
            Sandbox::Bubblewrap => "bwrap",
            Sandbox::Unshare => "unshare",
        }
    }

    /// The sandbox command that runs `script` with `sh -c`.
    fn command(self, run: &SandboxRun) -> Command {
        let SandboxRun { workspace, dir, command: script, network, hidden, read_only, .. } = *run;
        let root = running_as_root();
        match self {
            Sandbox::Bubblewrap => {
                // Root drops to the build user before bubblewrap starts, so every mount it
                // makes is made, and every path it opens is opened, as that user.
                let mut command = if root {
                    let mut setpriv = Command::new("setpriv");
                    setpriv.args(drop_privileges_args(true)).arg("--").arg("bwrap");
                    setpriv
                } else {
                    Command::new("bwrap")
                };
                command.args(["--unshare-all", "--die-with-parent", "--new-session"]);
                command.args(["--cap-drop", "ALL"]);
                if network {
                    command.arg("--share-net");
                }
                let mut visible: Vec<&Path> = Vec::new();
                for dir in TOOLCHAIN_DIRS {
                    command.args(["--ro-bind", dir, dir]);
                    visible.push(Path::new(dir));
                }
                for link in MERGED_USR_LINKS {
                    match std::fs::read_link(link) {
                        Ok(target) => {
                            command.arg("--symlink").arg(target).arg(link);
                        }
                        Err(_) if Path::new(link).is_dir() => {
                            command.args(["--ro-bind", link, link]);
                            visible.push(Path::new(link));
                        }
                        Err(_) => {}
                    }
                }
                for path in MINIMAL_ETC {
                    command.args(["--ro-bind-try", path, path]);
                    visible.push(Path::new(path));
                }
                command.args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
                for path in read_only {
                    command.arg("--ro-bind").arg(path).arg(path);
                    visible.push(path);
                }
                // A hidden path inside something visible is covered; one outside is not there.
                // Compared and covered by its real path: a home reached through a symbolic link
                // may really lie under the toolchain or a read-only path.
                for path in hidden {
                    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                    if visible
                        .iter()
                        .any(|shown| path.starts_with(shown) || shown.starts_with(path))
                    {
                        if path.is_dir() {
                            command.arg("--tmpfs").arg(path);
                        } else if path.exists() {
                            command.arg("--ro-bind").arg("/dev/null").arg(path);
                        }
                    }
                }
                command.arg("--bind").arg(workspace).arg(SANDBOX_BUILD_DIR);
                command.arg("--chdir").arg(self.view(workspace, dir));
                command.args(["--", "sh", "-c", script]);
                command
            }
            Sandbox::Unshare => {
                let mut command = Command::new("unshare");
                if !network {
                    command.arg("--net");
                }
                command.args(["--pid", "--mount", "--propagation", "private"]);
                command.args(["--fork", "--kill-child", "--mount-proc"]);
                if !root {
                    command.arg("--map-root-user");
                }
                // Inside the new mount namespace: hide the keys, replace the private
                // directories, make the host read-only but the build directory, drop to the
                // build user, run the build. Everything travels as arguments, unquoted.
                command.args(["--", "sh", "-c", UNSHARE_PRELUDE, "gantry-sandbox", script]);
                command.arg(workspace).arg(dir);
                command.arg(drop_privileges_args(root).join(" "));
                command.args(hidden);
                command
            }
        }
    }
}

/// Gives a tree to the build user (root only): the build may write there and nowhere else.
pub fn give_to_build_user(root: &Path) -> Result<(), Error> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(BUILD_UID), Some(BUILD_GID))
            .map_err(|e| Error::io(&path, e))?;
        let metadata = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| Error::io(&path, e))? {
                pending.push(entry.map_err(|e| Error::io(&path, e))?.path());
            }
        }
    }
    Ok(())
}

/// `setpriv` arguments that leave no capability and set `no_new_privs`; as root, also switch to
/// the build user. Dropping the bounding set matters for a uid 0 inside a user namespace: after
/// `exec` it would otherwise regain every capability.
fn drop_privileges_args(as_root: bool) -> Vec<String> {
    let mut args = Vec::new();
    if as_root {
        args.extend([
            format!("--reuid={BUILD_UID}"),
            format!("--regid={BUILD_GID}"),
            "--clear-groups".to_string(),
        ]);
    }
    // Changing credentials clears the parent-death signal unshare's `--kill-child` set; set it
    // again, so the build still dies with its sandbox (and with it the whole PID namespace).
    args.extend(
        [
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--pdeathsig=SIGKILL",
        ]
        .map(String::from),
    );
    args
}

/// Run by `sh -c` in the unshare sandbox's new mount namespace, as its root, with the build
/// script as `$1`, the build directory as `$2`, the directory to start in as `$3`, the
/// `setpriv` arguments as `$4` and the paths to hide after them. Any step that fails stops the build (status 125) before it runs.
const UNSHARE_PRELUDE: &str = r#"script="$1"; workspace="$2"; dir="$3"; drop="$4"; shift 4
fail() { echo "gantry-sandbox: $*" >&2; exit 125; }
for hidden in "$@"; do
  case "$hidden" in /*) ;; *) fail "cannot hide $hidden: not an absolute path";; esac
  if [ -d "$hidden" ]; then mount -t tmpfs -o size=1m,mode=0700 gantry-hidden "$hidden" || fail "cannot hide $hidden"
  elif [ -e "$hidden" ]; then mount --bind /dev/null "$hidden" || fail "cannot hide $hidden"; fi
done
exec 3<"$workspace" || fail "cannot open $workspace"
for private in /tmp /var/tmp /run /home /root /dev/shm /mnt /media /srv; do
  if [ -d "$private" ] && [ ! -L "$private" ]; then mount -t tmpfs -o size=64m,mode=1777 gantry-private "$private" || fail "cannot replace $private"; fi
done
mkdir -p "$workspace" && mount --no-canonicalize --bind /proc/self/fd/3 "$workspace" || fail "cannot mount the build directory $workspace"
exec 3<&-
mount -o remount,bind,ro / || fail "cannot make / read-only"
cd "$dir" || fail "cannot enter $dir"
unset OLDPWD
exec setpriv $drop -- sh -c "$script""#;

/// Messages that programs print when a connection fails for lack of network. A failed build
/// whose log holds one of them is reported as having tried the network.
const NETWORK_FAILURE_SIGNS: [&str; 12] = [
    "network is unreachable",
    "could not resolve host",
    "temporary failure in name resolution",
    "name or service not known",
    "no address associated with hostname",
    "failed to establish a new connection",
    "enetunreach",
    "eai_again",
    "getaddrinfo",
    "unable to access",
    "could not connect to",
    "failed to connect to",
];

/// Why a build command failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BuildFailure {
    /// The command tried to reach the network, which builds may not do.
    NetworkDenied { evidence: String, log_tail: String },
    /// The command exited non-zero (compilation or unit tests failed).
    Exited { code: Option<i32>, log_tail: String },
    /// The command ran past its time limit and was killed with everything it started.
    TimedOut { limit_seconds: u64, log_tail: String },
    /// The sandbox could not be set up.
    SandboxUnavailable { reason: String },
}

impl fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildFailure::NetworkDenied { evidence, log_tail } => write!(
                f,
                "the build tried to reach the network, and builds run without network access \
                 ({evidence:?}); fetch or vendor dependencies into the repository (e.g. \
                 `cargo vendor`, `npm ci --offline` from a committed cache) and build offline\n{log_tail}"
            ),
            BuildFailure::Exited { code, log_tail } => {
                let code = code.map_or("a signal".to_string(), |c| format!("status {c}"));
                write!(f, "the build command exited with {code}\n{log_tail}")
            }
            BuildFailure::TimedOut { limit_seconds, log_tail } => write!(
                f,
                "the build ran longer than its {} limit and was stopped; raise `build.timeout` \
                 or make the build faster\n{log_tail}",
                gantry_model::Duration::from_seconds(*limit_seconds)
            ),
            BuildFailure::SandboxUnavailable { reason } => write!(
                f,
                "could not start the build sandbox: {reason}; builds need bubblewrap or `unshare` \
                 (util-linux) and permission to create namespaces (root, or unprivileged user \
                 namespaces)"
            ),
        }
    }
}

/// What a command run in the sandbox did.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub log: Vec<u8>,
    /// Bytes the build wrote past [`MAX_BUILD_LOG_BYTES`], dropped.
    pub log_dropped: u64,
    pub elapsed: Duration,
}

/// One command to run in a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxRun<'a> {
    pub sandbox: Sandbox,
    /// The only directory the command may write to (bubblewrap); it holds `dir`.
    pub workspace: &'a Path,
    /// Where the command starts.
    pub dir: &'a Path,
    /// Run with `sh -c`.
    pub command: &'a str,
    /// The command's whole environment.
    pub env: &'a BTreeMap<String, String>,
    pub timeout: Duration,
    /// Keep the network (a pipeline that declared `network: true`).
    pub network: bool,
    /// A file to copy the output into as it comes (to follow a running build, and to read a
    /// failed one's whole log).
    pub log_file: Option<&'a Path>,
    /// Paths the command may not see (the build keys), absolute: each is covered by an empty
    /// mount, and one that cannot be is an error.
    pub hidden: &'a [PathBuf],
    /// Extra host paths the command may read (bubblewrap; unshare shows the host read-only
    /// anyway), absolute, already checked by [`crate::build::check_read_only_path`].
    pub read_only: &'a [PathBuf],
}

/// Runs a command in its sandbox, killed with everything it started after its time limit.
pub fn run_sandboxed(run: &SandboxRun) -> Result<Result<RunOutput, BuildFailure>, Error> {
    let SandboxRun { sandbox: kind, dir, env, timeout, network, log_file, .. } = *run;
    if let Some(relative) = run.hidden.iter().chain(run.read_only).find(|p| !p.is_absolute()) {
        return Ok(Err(BuildFailure::SandboxUnavailable {
            reason: format!(
                "{} is not an absolute path, so whether the build sees it would depend on the \
                 directory it starts in; name it absolutely",
                relative.display()
            ),
        }));
    }
    let log_copy = match log_file {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
            }
            Some(std::fs::File::create(path).map_err(|source| Error::io(path, source))?)
        }
        None => None,
    };
    if running_as_root() {
        give_to_build_user(run.workspace)?;
    }
    let mut sandbox = kind.command(run);
    // SAFETY: the hook runs in the forked child before `exec` and only makes one system call,
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut sandbox, close_inherited_descriptors);
    }
    let (reader, writer) = std::io::pipe().map_err(|source| Error::io(dir, source))?;
    let writer_for_errors = writer.try_clone().map_err(|source| Error::io(dir, source))?;
    sandbox
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_errors);
    let started = Instant::now();
    let mut child = match sandbox.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Ok(Err(BuildFailure::SandboxUnavailable {
                reason: format!("{}: {error}", kind.program()),
            }));
        }
    };
    drop(sandbox);
    let collector = std::thread::spawn(move || collect_log(reader, log_copy));
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|source| Error::io(dir, source))? {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            // unshare's child is PID 1 of the namespace and dies with unshare (--kill-child);
            // when it dies the kernel kills every process left in the namespace.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let (log, log_dropped) = collector.join().expect("log collector does not panic");
    let elapsed = started.elapsed();
    let tail = log_tail(&log);
    let Some(status) = status else {
        return Ok(Err(BuildFailure::TimedOut {
            limit_seconds: timeout.as_secs(),
            log_tail: tail,
        }));
    };
    if status.success() {
        return Ok(Ok(RunOutput { log, log_dropped, elapsed }));
    }
    let text = String::from_utf8_lossy(&log);
    if ["unshare: ", "bwrap: ", "gantry-sandbox: "].iter().any(|prefix| text.starts_with(prefix)) {
        return Ok(Err(BuildFailure::SandboxUnavailable {
            reason: text.lines().next().unwrap_or("").to_string(),
        }));
    }
    if !network && let Some(evidence) = network_evidence(&text) {
        return Ok(Err(BuildFailure::NetworkDenied { evidence, log_tail: tail }));
    }
    Ok(Err(BuildFailure::Exited { code: status.code(), log_tail: tail }))
}

/// Marks every file descriptor above stderr close-on-exec in the forked child, so none the
/// builder inherited from whoever started it (an open key file, an agent or container socket)
/// reaches the build: Rust opens its own with `O_CLOEXEC`, but a parent's survive `exec`, and
/// neither bubblewrap nor `unshare` closes them. The standard library's own exec-error pipe is
/// close-on-exec already, so a failed `exec` is still reported. A kernel without
/// `close_range(2)` (before 5.11) cannot start a build.
fn close_inherited_descriptors() -> std::io::Result<()> {
    // SAFETY: close_range takes integers only; with CLOSE_RANGE_CLOEXEC it closes nothing now.
    let result =
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn collect_log(mut reader: std::io::PipeReader, mut copy: Option<std::fs::File>) -> (Vec<u8>, u64) {
    let mut log = Vec::new();
    let mut dropped = 0u64;
    let mut buffer = [0u8; 64 * 1024];
    while let Ok(read) = reader.read(&mut buffer) {
        if read == 0 {
            break;
        }
        let room = MAX_BUILD_LOG_BYTES.saturating_sub(log.len()).min(read);
        log.extend_from_slice(&buffer[..room]);
        if let Some(file) = &mut copy {
            // A full disk must not stop the build: the log in memory is the one stored.
            let _ = std::io::Write::write_all(file, &buffer[..room]);
        }
        dropped += (read - room) as u64;
    }
    (log, dropped)
}

fn log_tail(log: &[u8]) -> String {
    let start = log.len().saturating_sub(FAILURE_LOG_TAIL_BYTES);
    String::from_utf8_lossy(&log[start..]).trim_end().to_string()
}

/// The first log line that shows a failed network connection.
pub fn network_evidence(log: &str) -> Option<String> {
    log.lines()
        .find(|line| {
            let lower = line.to_lowercase();
            NETWORK_FAILURE_SIGNS.iter().any(|sign| lower.contains(sign))
        })
        .map(|line| line.trim().chars().take(300).collect())
}

/// Whether this process's effective user is root.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|effective| effective == "0")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sandboxes to test: both when bubblewrap is installed (and always when
    /// `GANTRY_REQUIRE_BUBBLEWRAP` is set, which makes a missing `bwrap` a failure).
    fn sandboxes() -> Vec<Sandbox> {
        let required = std::env::var_os("GANTRY_REQUIRE_BUBBLEWRAP").is_some();
        if Sandbox::detect() == Sandbox::Bubblewrap || required {
            vec![Sandbox::Unshare, Sandbox::Bubblewrap]
        } else {
            vec![Sandbox::Unshare]
        }
    }

    fn run(sandbox: Sandbox, command: &str, timeout_ms: u64) -> Result<RunOutput, BuildFailure> {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([
            ("PATH".to_string(), SANDBOX_PATH.to_string()),
            ("ONLY".to_string(), "me".to_string()),
        ]);
        run_sandboxed(&SandboxRun {
            sandbox,
            workspace: dir.path(),
            dir: dir.path(),
            command,
            env: &env,
            timeout: Duration::from_millis(timeout_ms),
            network: false,
            log_file: None,
            hidden: &[],
            read_only: &[],
        })
        .unwrap()
    }

    fn outcome(result: &Result<RunOutput, BuildFailure>) -> String {
        match result {
            Ok(output) => format!("ok: {}", String::from_utf8_lossy(&output.log).trim()),
            Err(BuildFailure::NetworkDenied { .. }) => "network denied".into(),
            Err(BuildFailure::Exited { code, .. }) => format!("exited {code:?}"),
            Err(BuildFailure::TimedOut { .. }) => "timed out".into(),
            Err(BuildFailure::SandboxUnavailable { reason }) => format!("no sandbox: {reason}"),
        }
    }

    #[test]
    fn sandbox_outcomes() {
        let cases = [
            (
                "env | grep -v '^PWD=' | sort | tr '\\n' ' '",
                "ok: ONLY=me PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("echo out; echo err >&2", "ok: out\nerr"),
            ("exit 3", "exited Some(3)"),
            ("git ls-remote http://127.0.0.1:9/repo.git", "network denied"),
            ("git ls-remote https://example.com/repo.git", "network denied"),
            ("sleep 5", "timed out"),
        ];
        for sandbox in sandboxes() {
            for (command, expected) in cases {
                let got = outcome(&run(sandbox, command, 2000));
                assert!(
                    got.starts_with(expected),
                    "{sandbox:?} {command}: got {got:?}, expected {expected:?}"
                );
            }
        }
    }

    #[test]
    fn bubblewrap_leaves_only_the_build_directory_writable() {
        if !sandboxes().contains(&Sandbox::Bubblewrap) {
            return;
        }
        // Outside /tmp, which bubblewrap replaces with a private one anyway.
        let outside = tempfile::tempdir_in("/var/tmp").unwrap();
        let command = format!(
            "touch inside && touch /tmp/private && ls /tmp && (touch {}/escaped 2>/dev/null || echo refused)",
            outside.path().display()
        );
        let got = outcome(&run(Sandbox::Bubblewrap, &command, 2000));
        assert_eq!(got, "ok: private\nrefused");
        assert!(!outside.path().join("escaped").exists());
    }

    #[test]
    fn timeout_kills_the_whole_process_tree() {
        for sandbox in sandboxes() {
            let dir = tempfile::tempdir().unwrap();
            let marker = dir.path().join("survived");
            let command = format!("(sleep 1; touch {}) & sleep 5", marker.display());
            let env = BTreeMap::from([("PATH".to_string(), SANDBOX_PATH.to_string())]);
            let result = run_sandboxed(&SandboxRun {
                sandbox,
                workspace: dir.path(),
                dir: dir.path(),
                command: &command,
                env: &env,
                timeout: Duration::from_millis(300),
                network: false,
                log_file: None,
                hidden: &[],
                read_only: &[],
            })
            .unwrap();
            assert!(matches!(result, Err(BuildFailure::TimedOut { .. })), "{sandbox:?}");
            std::thread::sleep(Duration::from_millis(1500));
            assert!(!marker.exists(), "{sandbox:?}: a background process outlived the time limit");
        }
    }

    #[test]
    fn recognises_network_failures() {
        for (log, expected) in [
            (
                "Compiling\ncurl: (7) Failed to connect to example.com port 443",
                Some("curl: (7) Failed to connect to example.com port 443"),
            ),
            (
                "error: Could not resolve host: index.crates.io",
                Some("error: Could not resolve host: index.crates.io"),
            ),
            (
                "OSError: [Errno 101] Network is unreachable",
                Some("OSError: [Errno 101] Network is unreachable"),
            ),
            ("test result: FAILED. 1 passed; 1 failed", None),
        ] {
            assert_eq!(network_evidence(log).as_deref(), expected, "{log}");
        }
    }
}
