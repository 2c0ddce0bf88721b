//! Hermetic builds: the exact commit, checked out clean, built without network.
//!
//! A build exports the commit's tree (`git archive`) into a fresh directory, lists the pinned
//! dependencies from its lock files, then runs the pipeline's build command with `sh -c` in a
//! [`Sandbox`]: always a new network namespace that holds only a loopback interface that is down,
//! so every connection fails, and a new PID namespace, so the time limit kills the whole process
//! tree. With bubblewrap (preferred when installed) the whole filesystem is read-only except the
//! build's own directory, and `/tmp` is private; with plain `unshare` only the namespaces apply.
//! The environment is cleared and rebuilt from a short fixed list. Standard output and error are
//! captured, up to a limit, and stored beside the artifact. A failure says whether the build
//! tried the network.
//!
//! [`Builder::build`] then packs the declared outputs, writes the manifest with every commit's
//! authors and reviewers, signs the provenance with the active build key, and stores the
//! artifact.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::artifact::{self, BuildRecord, BuilderRecord, CommitRecord, Manifest, SourceRecord};
use crate::keys::KeyPair;
use crate::review::ReviewBook;
use crate::source::{Commit, Repository};
use crate::store::{Store, StoredArtifact};
use crate::{Digest, Error, attestation, lockfiles};

/// The most build output kept in the log: enough for any compiler error, bounded so a runaway
/// build cannot fill the store's disk.
pub const MAX_BUILD_LOG_BYTES: usize = 16 * 1024 * 1024;
/// How much of the log's end a failure message quotes.
pub const FAILURE_LOG_TAIL_BYTES: usize = 2048;
/// How often a running build is checked against its time limit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// `PATH` inside the sandbox: the system's tool directories, nothing from the caller's.
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a build is isolated from the machine it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sandbox {
    /// bubblewrap (`bwrap`): new network, PID, IPC and UTS namespaces; the root filesystem
    /// mounted read-only, the build directory writable, private `/tmp`, `/dev` and `/proc`.
    Bubblewrap,
    /// util-linux `unshare`: new network, PID and mount namespaces; the filesystem stays
    /// writable, so a build may leave files outside its directory.
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
                "bwrap --unshare-all --die-with-parent --ro-bind / / --tmpfs /tmp (build directory writable)"
            }
            Sandbox::Unshare => "unshare --pid --mount --fork --kill-child --mount-proc",
        };
        let network = if network { "network allowed by the pipeline" } else { "no network" };
        format!("{base}; {network}; environment cleared")
    }

    /// The sandbox command that runs `script` with `sh -c`, with each of `hidden` replaced by an
    /// empty tmpfs.
    fn command(self, run: &SandboxRun) -> Command {
        let SandboxRun { workspace, dir, command: script, network, hidden, .. } = *run;
        match self {
            Sandbox::Bubblewrap => {
                let mut command = Command::new("bwrap");
                command.args(["--unshare-all", "--die-with-parent", "--new-session"]);
                if network {
                    command.arg("--share-net");
                }
                command.args([
                    "--ro-bind",
                    "/",
                    "/",
                    "--dev",
                    "/dev",
                    "--proc",
                    "/proc",
                    "--tmpfs",
                    "/tmp",
                ]);
                for path in hidden {
                    command.arg("--tmpfs").arg(path);
                }
                command.arg("--bind").arg(workspace).arg(workspace);
                command.arg("--chdir").arg(dir);
                command.args(["--", "sh", "-c", script]);
                command
            }
            Sandbox::Unshare => {
                let mut command = Command::new("unshare");
                if !network {
                    command.arg("--net");
                }
                command.args(["--pid", "--mount", "--fork", "--kill-child", "--mount-proc"]);
                if !running_as_root() {
                    command.arg("--map-root-user");
                }
                // Inside the new mount namespace: cover each hidden directory with an empty
                // tmpfs, then run the build. Paths and script travel as arguments, unquoted.
                command.args(["--", "sh", "-c", UNSHARE_PRELUDE, "gantry-sandbox", script]);
                command.args(hidden);
                command
            }
        }
    }

    fn program(self) -> &'static str {
        match self {
            Sandbox::Bubblewrap => "bwrap",
            Sandbox::Unshare => "unshare",
        }
    }
}

/// Run by `sh -c` in the unshare sandbox with the build script as `$1` and the directories to
/// hide after it. If a directory cannot be hidden the build does not run.
const UNSHARE_PRELUDE: &str = r#"script="$1"; shift; for hidden in "$@"; do if [ -d "$hidden" ]; then mount -t tmpfs -o size=1m,mode=0700 gantry-hidden "$hidden" || { echo "gantry-sandbox: cannot hide $hidden" >&2; exit 125; }; fi; done; exec sh -c "$script""#;

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
    /// Directories the command may not see (the build keys): each is covered by an empty tmpfs.
    pub hidden: &'a [PathBuf],
}

/// Runs a command in its sandbox, killed with everything it started after its time limit.
pub fn run_sandboxed(run: &SandboxRun) -> Result<Result<RunOutput, BuildFailure>, Error> {
    let SandboxRun { sandbox: kind, dir, env, timeout, network, log_file, .. } = *run;
    let log_copy = match log_file {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
            }
            Some(std::fs::File::create(path).map_err(|source| Error::io(path, source))?)
        }
        None => None,
    };
    let mut sandbox = kind.command(run);
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

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|effective| effective == "0")
        })
        .unwrap_or(false)
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub service: String,
    pub pipeline: String,
    pub source: gantry_model::Source,
    pub build: gantry_model::pipeline::Build,
    /// The commit to build; the mainline head when `None`.
    pub commit: Option<String>,
    /// The commit after which this artifact's commits start; by default the commit of the
    /// pipeline's newest artifact, or the start of history.
    pub since: Option<String>,
    /// Variables added to the sandbox's environment (e.g. a vendored toolchain's home).
    pub env: BTreeMap<String, String>,
}

/// Builds, signs and stores artifacts.
pub struct Builder<'a> {
    pub store: &'a Store,
    pub key: &'a KeyPair,
    pub reviews: &'a ReviewBook,
    /// Scratch space for checkouts; each build gets a fresh directory, removed afterwards.
    pub work_dir: PathBuf,
    /// Mirrors of remote repositories.
    pub cache_dir: PathBuf,
    pub builder_id: String,
    pub host: String,
    pub sandbox: Sandbox,
    /// Directories builds may not read: at least the build keys' (SLSA Build L3: signing
    /// secrets are out of reach of the build steps).
    pub hidden: Vec<PathBuf>,
}

/// A built and stored artifact, with what the build printed.
pub struct Built {
    pub artifact: StoredArtifact,
    pub log: Vec<u8>,
    pub elapsed: Duration,
}

static INVOCATIONS: AtomicU64 = AtomicU64::new(0);

impl Builder<'_> {
    /// Builds `request` into a signed artifact in the store. A failed build stores nothing and
    /// returns [`Error::Build`] with its log's end, its whole log left in `work_dir/logs/`.
    pub fn build(&self, request: &BuildRequest) -> Result<Built, Error> {
        let started_at = Timestamp::now();
        let repository = Repository::open(&request.source, &self.cache_dir)?;
        let commit_id = match &request.commit {
            Some(revision) => repository.resolve(revision)?,
            None => repository.head()?,
        };
        if !repository.is_on_mainline(&commit_id)? {
            return Err(Error::Source(format!(
                "commit {commit_id} is not on {}'s mainline branch {}; only mainline commits are built",
                repository.name, repository.branch
            )));
        }
        let baseline = match &request.since {
            Some(since) => Some(repository.resolve(since)?).filter(|b| *b != commit_id),
            None => self.previous_artifact_commit(&repository, &request.pipeline, &commit_id)?,
        };
        let commits = repository.commits_between(baseline.as_deref(), &commit_id)?;
        let head = repository.commit(&commit_id)?;

        // Unique across builds in this process (the counter) and across processes (the pid),
        // so concurrent builds never share a scratch directory.
        let invocation = format!(
            "{}-{}-{}-{}-{}",
            request.pipeline,
            &commit_id[..12],
            started_at.as_second(),
            std::process::id(),
            INVOCATIONS.fetch_add(1, Ordering::Relaxed)
        );
        let scratch = self.work_dir.join(&invocation);
        let result = self.build_in(
            &scratch,
            request,
            &repository,
            &head,
            baseline,
            commits,
            started_at,
            &invocation,
        );
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    /// The commit of the pipeline's newest artifact built from a strict ancestor of `commit`:
    /// the artifact this one follows. Building an older commit, or the same one again, does not
    /// take a later artifact as its baseline (that would list no commits, and so none to review).
    fn previous_artifact_commit(
        &self,
        repository: &Repository,
        pipeline: &str,
        commit: &str,
    ) -> Result<Option<String>, Error> {
        for artifact in self.store.list()?.into_iter().rev() {
            let built = &artifact.manifest.source.commit;
            if artifact.manifest.pipeline == pipeline
                && built != commit
                && repository.is_ancestor(built, commit)?
            {
                return Ok(Some(built.clone()));
            }
        }
        Ok(None)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private step of `build`, named at its only call"
    )]
    fn build_in(
        &self,
        scratch: &Path,
        request: &BuildRequest,
        repository: &Repository,
        head: &Commit,
        baseline: Option<String>,
        commits: Vec<Commit>,
        started_at: Timestamp,
        invocation: &str,
    ) -> Result<Built, Error> {
        let checkout = scratch.join("src");
        repository.export(&head.id, &checkout)?;
        let dependencies = lockfiles::find(&checkout)?;
        let home = scratch.join("home");
        let tmp = scratch.join("tmp");
        for dir in [&home, &tmp] {
            std::fs::create_dir_all(dir).map_err(|source| Error::io(dir, source))?;
        }
        let epoch = head.authored_at.as_second().max(0);
        let mut env = BTreeMap::from([
            ("PATH".to_string(), SANDBOX_PATH.to_string()),
            ("HOME".to_string(), home.display().to_string()),
            ("TMPDIR".to_string(), tmp.display().to_string()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
            ("TZ".to_string(), "UTC".to_string()),
            ("CI".to_string(), "true".to_string()),
            ("SOURCE_DATE_EPOCH".to_string(), epoch.to_string()),
            ("GANTRY_COMMIT".to_string(), head.id.clone()),
            ("GANTRY_SERVICE".to_string(), request.service.clone()),
            ("GANTRY_PIPELINE".to_string(), request.pipeline.clone()),
        ]);
        env.extend(request.env.clone());
        let timeout = Duration::from_secs(request.build.timeout.as_seconds());
        let log_file = self.work_dir.join("logs").join(format!("{invocation}.log"));
        let run = run_sandboxed(&SandboxRun {
            sandbox: self.sandbox,
            workspace: scratch,
            dir: &checkout,
            command: &request.build.command,
            env: &env,
            timeout,
            network: request.build.network,
            log_file: Some(&log_file),
            hidden: &self.hidden,
        })?
        .map_err(|failure| Error::Build { failure, log: log_file.display().to_string() })?;
        // Kept only for failed builds; a stored artifact keeps its log beside it.
        let _ = std::fs::remove_file(&log_file);

        let package_path = scratch.join("package.tar.zst");
        let origin = artifact::Origin {
            service: request.service.clone(),
            pipeline: request.pipeline.clone(),
            repository: repository.name.clone(),
            branch: repository.branch.clone(),
            commit: head.id.clone(),
        };
        let package = artifact::pack(
            &checkout,
            &request.build.outputs,
            &origin,
            epoch as u64,
            &package_path,
        )?;
        let commits = commits
            .into_iter()
            .map(|commit| CommitRecord { reviewers: self.reviews.reviewers_of(&commit), commit })
            .collect();
        let manifest = Manifest {
            schema: artifact::MANIFEST_SCHEMA.into(),
            service: request.service.clone(),
            pipeline: request.pipeline.clone(),
            source: SourceRecord {
                repository: repository.name.clone(),
                branch: repository.branch.clone(),
                commit: head.id.clone(),
                baseline,
            },
            commits,
            build: BuildRecord::from(&request.build),
            builder: BuilderRecord {
                id: self.builder_id.clone(),
                host: self.host.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                sandbox: self.sandbox.describe(request.build.network),
            },
            dependencies,
            package,
            started_at,
            finished_at: Timestamp::now(),
        };
        let statement =
            attestation::statement(&manifest, Digest::of(&manifest.to_bytes()), invocation);
        let envelope = attestation::sign(&statement, self.key);
        let mut log = run.log;
        if run.log_dropped > 0 {
            log.extend_from_slice(
                format!("\n[gantry: {} more bytes of output dropped]\n", run.log_dropped)
                    .as_bytes(),
            );
        }
        let artifact = self.store.put(&package_path, &manifest, &envelope, &log)?;
        Ok(Built { artifact, log, elapsed: run.elapsed })
    }
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
    fn hidden_directories_are_empty_inside_the_sandbox() {
        // Outside /tmp, which bubblewrap replaces with a private one anyway.
        let secrets = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::write(secrets.path().join("build.key"), "secret").unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([("PATH".to_string(), SANDBOX_PATH.to_string())]);
        let command = format!(
            "cat {0}/build.key 2>/dev/null || echo hidden; ls -A {0}",
            secrets.path().display()
        );
        for sandbox in sandboxes() {
            let result = run_sandboxed(&SandboxRun {
                sandbox,
                workspace: workspace.path(),
                dir: workspace.path(),
                command: &command,
                env: &env,
                timeout: Duration::from_secs(5),
                network: false,
                log_file: None,
                hidden: &[secrets.path().to_path_buf()],
            })
            .unwrap();
            assert_eq!(outcome(&result), "ok: hidden", "{sandbox:?}");
        }
        assert!(secrets.path().join("build.key").exists(), "hiding leaves the directory intact");
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
