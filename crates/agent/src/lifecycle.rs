//! One deployment of one revision to this box: CodeDeploy's in-place lifecycle.
//!
//! ```text
//! BeforeBlockTraffic  BlockTraffic  AfterBlockTraffic      (behind a load balancer only;
//! ApplicationStop                                           these four from the previous revision)
//! DownloadBundle  BeforeInstall  Install  AfterInstall  ApplicationStart  ValidateService
//! BeforeAllowTraffic  AllowTraffic  AfterAllowTraffic      (behind a load balancer only)
//! ```
//!
//! ApplicationStop, BeforeBlockTraffic and AfterBlockTraffic run the scripts of the revision
//! whose Install last succeeded for this pipeline, as CodeDeploy does; on a box's first
//! deployment there is none and they do not run. BlockTraffic deregisters the box from its load
//! balancer (draining it) and AllowTraffic registers it again once its health check passes,
//! through [`Traffic`].
//!
//! Every script runs under its appspec `timeout`, and the whole lifecycle under the pipeline's
//! `hook_timeout`: whichever runs out first kills the script's process group and fails the box.
//!
//! Each pipeline has its own directory, so a box runs one artifact per pipeline (code,
//! configuration, OS patches) side by side. Revisions are kept in versioned directories named by
//! digest — the current one and [`MAX_PREVIOUS_REVISIONS`] before it — so rolling back to a
//! recent revision needs no download.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry_model::{Digest, Timestamp};
use serde::{Deserialize, Serialize};

use crate::appspec::{APPSPEC_FILE, AppSpec, LifecycleEvent, MAX_EVENT_SECONDS};
use crate::health::HealthProbe;
use crate::hooks::{self, Deadline, HookEnvironment, HookFailure};
use crate::install::{self, Installed};
use crate::{Error, write_json_atomically};

/// Earlier revisions kept beside the current one, for rollback without a download: CodeDeploy's
/// default `:max_revisions:` keeps five plus the current one.
pub const MAX_PREVIOUS_REVISIONS: usize = 5;
/// The longest pipeline name the agent accepts as a directory name.
pub const MAX_PIPELINE_NAME: usize = 128;

/// One deployment the controller asked this box to carry out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub environment: HookEnvironment,
    /// The pipeline whose artifact this is: the box keeps one revision per pipeline.
    pub pipeline: String,
    pub digest: Digest,
    /// The pipeline's `hook_timeout`: the whole lifecycle's budget.
    pub lifecycle_timeout: Duration,
    /// CodeDeploy's `ignoreApplicationStopFailures`: a failing script of the previous revision's
    /// ApplicationStop, BeforeBlockTraffic or AfterBlockTraffic does not fail the deployment.
    pub ignore_application_stop_failures: bool,
    /// The pipeline's health check, run after ValidateService (by AllowTraffic when the box has
    /// a load balancer, else on the box's loopback).
    #[serde(default)]
    pub health_check: Option<HealthProbe>,
    /// How long the box may take to pass it.
    #[serde(default = "default_health_check_timeout")]
    pub health_check_timeout: Duration,
}

fn default_health_check_timeout() -> Duration {
    Duration::from_secs(300)
}

/// BlockTraffic and AllowTraffic: what the agent does with the box's load balancer.
pub trait Traffic {
    /// Deregisters the box and waits for its connections to drain, by `deadline`.
    fn block(&mut self, deadline: Instant) -> Result<(), String>;
    /// Waits until the box passes its health check — the pipeline's `check` when it has one —
    /// then registers it, by `deadline`.
    fn allow(&mut self, deadline: Instant, check: Option<&HealthProbe>) -> Result<(), String>;
}

/// How one lifecycle event went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event: LifecycleEvent,
    pub started_at: Timestamp,
    pub elapsed: Duration,
    /// `None` when it succeeded (or had nothing to do); what went wrong otherwise.
    pub failure: Option<String>,
    /// The event ran nothing: no scripts, or (for the previous revision's events) no previous
    /// revision.
    pub skipped: bool,
}

/// Every event of a deployment that ran, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub events: Vec<EventRecord>,
}

/// What a pipeline's directory remembers between deployments: CodeDeploy's
/// `last_successful_install` and cleanup file, and the kept revisions, newest last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// The revision whose Install event last succeeded.
    pub last_successful_install: Option<Digest>,
    /// What that Install put on the box.
    pub installed: Installed,
    /// Kept revisions, oldest first.
    pub revisions: Vec<Digest>,
}

/// The agent's directory for one pipeline: `ROOT/pipelines/NAME/`.
pub struct PipelineDirectory {
    root: PathBuf,
}

/// Checks a pipeline name is a safe directory name.
pub fn check_pipeline_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= MAX_PIPELINE_NAME
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "pipeline name {name:?} must be 1 to {MAX_PIPELINE_NAME} letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl PipelineDirectory {
    pub fn open(agent_root: &Path, pipeline: &str) -> Result<PipelineDirectory, Error> {
        check_pipeline_name(pipeline)?;
        let root = agent_root.join("pipelines").join(pipeline);
        for directory in [root.join("revisions"), root.join("logs")] {
            std::fs::create_dir_all(&directory).map_err(|e| Error::io(&directory, e))?;
        }
        Ok(PipelineDirectory { root })
    }

    fn record_path(&self) -> PathBuf {
        self.root.join("pipeline.json")
    }

    pub fn record(&self) -> Result<PipelineRecord, Error> {
        let path = self.record_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(PipelineRecord::default())
            }
            Err(error) => Err(Error::io(&path, error)),
        }
    }

    fn save(&self, record: &PipelineRecord) -> Result<(), Error> {
        write_json_atomically(&self.record_path(), record)
    }

    /// The directory of a revision: `revisions/HEX/`, holding `bundle/` (the unpacked package).
    pub fn revision(&self, digest: &Digest) -> PathBuf {
        self.root.join("revisions").join(digest.hex())
    }

    /// The unpacked revision.
    pub fn bundle(&self, digest: &Digest) -> PathBuf {
        self.revision(digest).join("bundle")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Unpacks a package (tar + zstd, already verified) into its revision directory, unless it
    /// is there already; keeps the package beside it so it can be verified again.
    pub fn stage(&self, digest: &Digest, package: &[u8]) -> Result<PathBuf, Error> {
        let revision = self.revision(digest);
        let bundle = revision.join("bundle");
        if bundle.join(APPSPEC_FILE).is_file() {
            return Ok(bundle);
        }
        let staging = self.root.join("revisions").join(format!(".{}.staging", digest.hex()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(staging.join("bundle")).map_err(|e| Error::io(&staging, e))?;
        let decoder = zstd::Decoder::new(package)
            .map_err(|e| Error::Package(format!("the package is not zstd: {e}")))?;
        let mut archive = tar::Archive::new(decoder);
        archive.set_preserve_permissions(true);
        // `unpack` refuses entries that would land outside the directory.
        archive
            .unpack(staging.join("bundle"))
            .map_err(|e| Error::Package(format!("the package does not unpack: {e}")))?;
        std::fs::write(staging.join("package.tar.zst"), package)
            .map_err(|e| Error::io(&staging, e))?;
        let _ = std::fs::remove_dir_all(&revision);
        std::fs::rename(&staging, &revision).map_err(|e| Error::io(&revision, e))?;
        Ok(bundle)
    }

    /// Drops revisions beyond the current one and the [`MAX_PREVIOUS_REVISIONS`] newest others.
    fn prune(&self, record: &mut PipelineRecord) {
        let keep_current = record.last_successful_install;
        while record.revisions.len() > MAX_PREVIOUS_REVISIONS + 1 {
            let Some(index) = record.revisions.iter().position(|d| Some(*d) != keep_current) else {
                break;
            };
            let digest = record.revisions.remove(index);
            let _ = std::fs::remove_dir_all(self.revision(&digest));
        }
    }
}

/// Runs the in-place lifecycle of `deployment`, whose package is already staged (and verified).
/// `traffic` is the box's load balancer, if it has one; `observe` hears of every event as it
/// ends (the agent reports progress and records where it is from it).
pub fn run(
    directory: &PipelineDirectory,
    deployment: &Deployment,
    mut traffic: Option<&mut dyn Traffic>,
    observe: &mut dyn FnMut(&EventRecord),
) -> Result<Report, Error> {
    let started = Instant::now();
    let deadline = Deadline {
        at: started + deployment.lifecycle_timeout,
        failure: HookFailure::LifecycleTimeout(deployment.lifecycle_timeout.as_secs()),
    };
    let mut record = directory.record()?;
    let bundle = directory.bundle(&deployment.digest);
    let appspec_name = format!("{} of {}", APPSPEC_FILE, deployment.digest.short());
    let spec = AppSpec::read(&bundle)?;
    spec.check_bundle(&bundle, &appspec_name)?;
    // The previous revision's appspec, for the events that run its scripts. A previous revision
    // that cannot be read fails those events, as in CodeDeploy.
    let previous = record.last_successful_install.map(|digest| {
        let bundle = directory.bundle(&digest);
        (bundle.clone(), AppSpec::read(&bundle))
    });
    let log = hooks::log_path(&directory.logs(), &deployment.environment.deployment_id);
    let mut report = Report::default();

    for event in LifecycleEvent::IN_PLACE_ORDER {
        if event.traffic() && traffic.is_none() {
            continue;
        }
        let started_at = Timestamp::now();
        let event_started = Instant::now();
        let mut skipped = false;
        let outcome: Result<(), String> = match event {
            LifecycleEvent::DownloadBundle => Ok(()),
            LifecycleEvent::BlockTraffic => {
                traffic.as_mut().expect("checked above").block(deadline.at)
            }
            LifecycleEvent::AllowTraffic => {
                let until = deadline.at.min(Instant::now() + deployment.health_check_timeout);
                let check = deployment.health_check.as_ref();
                traffic.as_mut().expect("checked above").allow(until, check)
            }
            LifecycleEvent::Install => install::remove_previous(&record.installed)
                .and_then(|()| install::install(&spec, &bundle))
                .map(|installed| {
                    record.installed = installed;
                    record.last_successful_install = Some(deployment.digest);
                    record.revisions.retain(|d| *d != deployment.digest);
                    record.revisions.push(deployment.digest);
                    directory.prune(&mut record);
                })
                .and_then(|()| directory.save(&record))
                .map_err(|error| error.to_string()),
            _ if event.from_previous_revision() => match &previous {
                None => {
                    skipped = true;
                    Ok(())
                }
                Some((_, Err(problems))) => {
                    Err(format!("the previous revision's appspec cannot be read: {problems}"))
                }
                Some((previous_bundle, Ok(previous_spec))) => {
                    skipped = previous_spec.scripts(event).is_empty();
                    let result = run_scripts(
                        previous_bundle,
                        previous_spec,
                        event,
                        deployment,
                        &deadline,
                        &log,
                    );
                    match result {
                        Err(_) if deployment.ignore_application_stop_failures => Ok(()),
                        other => other,
                    }
                }
            },
            _ => {
                skipped = spec.scripts(event).is_empty();
                run_scripts(&bundle, &spec, event, deployment, &deadline, &log)
            }
        };
        let entry = EventRecord {
            event,
            started_at,
            elapsed: event_started.elapsed(),
            failure: outcome.as_ref().err().cloned(),
            skipped,
        };
        observe(&entry);
        report.events.push(entry);
        if let Err(reason) = outcome {
            return Err(Error::Lifecycle { event, reason, report: Box::new(report) });
        }
    }
    // Without a load balancer, the pipeline's health check still decides whether the box is
    // healthy, on its loopback.
    if let (None, Some(check)) = (&traffic, &deployment.health_check) {
        let until = deadline.at.min(Instant::now() + deployment.health_check_timeout);
        if let Err(reason) = crate::health::wait_healthy("127.0.0.1", check, until) {
            let reason = format!("the health check failed after ValidateService: {reason}");
            let event = LifecycleEvent::ValidateService;
            return Err(Error::Lifecycle { event, reason, report: Box::new(report) });
        }
    }
    Ok(report)
}

fn run_scripts(
    bundle: &Path,
    spec: &AppSpec,
    event: LifecycleEvent,
    deployment: &Deployment,
    lifecycle: &Deadline,
    log: &Path,
) -> Result<(), String> {
    let deadlines = [
        lifecycle.clone(),
        Deadline {
            at: Instant::now() + Duration::from_secs(MAX_EVENT_SECONDS),
            failure: HookFailure::EventTimeout(MAX_EVENT_SECONDS),
        },
    ];
    for script in spec.scripts(event) {
        if let Some(passed) = deadlines.iter().find(|d| Instant::now() >= d.at) {
            return Err(format!(
                "script {} did not start: an earlier script used up the time (it {})",
                script.location, passed.failure
            ));
        }
        hooks::run(bundle, event, script, &deployment.environment, &deadlines, log).map_err(
            |failure| {
                let runas =
                    script.runas.as_ref().map(|u| format!(" run as {u}")).unwrap_or_default();
                format!(
                    "script {}{runas} {failure}\nthe end of its log ({}):\n{}",
                    script.location,
                    log.display(),
                    hooks::log_tail(log)
                )
            },
        )?;
    }
    Ok(())
}
