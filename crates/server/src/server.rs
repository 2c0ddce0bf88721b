//! Opening a data directory and serving it: the controller's shared state and its start-up.
//!
//! Start-up, in order: lock the data directory; open (migrate or refuse) the database; load the
//! audit key; issue the bootstrap admin token if no token exists; load the store and queue its
//! undelivered outbox for the agents; begin a new epoch past every one stored. Agents that report
//! a higher epoch or command id than the controller knows (it was restored from a backup) move
//! the epoch past theirs before anything else is sent to them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use gantry_model::{Target, Timestamp};
use gantry_store::{AuditRecord, Store};

use crate::agents::Agents;
use crate::audit::{self, AuditKey};
use crate::auth::{Grant, Principal, Role, Tokens, new_token, token_hash};
use crate::metrics::Metrics;
use crate::{DataDir, Error, SqliteStore};

/// How a server is started.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Where signed audit checkpoints are appended; outside the data directory.
    pub checkpoints: PathBuf,
    pub listen: SocketAddr,
    /// The organisation directory (topology, policy, pipelines), watched for changes.
    pub organisation: Option<PathBuf>,
    /// The certificate and key to serve HTTPS with; required beyond loopback.
    pub tls: Option<crate::tls::TlsFiles>,
    /// How pipelines are built; `None` builds nothing (no supply home).
    pub builds: Option<crate::builds::BuildConfig>,
}

impl Config {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Config {
        let checkpoints = audit::default_checkpoints(&data_dir);
        Config { data_dir, checkpoints, listen, organisation: None, tls: None, builds: None }
    }
}

/// Why the store is not taking commits, for health and metrics.
#[derive(Debug, Default)]
pub struct StoreHealth {
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl StoreHealth {
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("health lock").clone()
    }

    pub fn record(&self, result: Result<(), String>, metrics: &Metrics) {
        match result {
            Ok(()) => {
                self.healthy.store(true, Ordering::SeqCst);
                *self.last_error.lock().expect("health lock") = None;
                metrics.store_healthy.set(1);
            }
            Err(error) => {
                self.healthy.store(false, Ordering::SeqCst);
                *self.last_error.lock().expect("health lock") = Some(error);
                metrics.store_healthy.set(0);
                metrics.store_commit_failures.inc();
            }
        }
    }
}

/// Everything the request handlers and the background tasks share.
pub struct Controller {
    /// The only writer to the database; called from blocking threads.
    pub store: Mutex<SqliteStore>,
    pub tokens: RwLock<Tokens>,
    pub agents: Mutex<Agents>,
    /// Woken whenever a command is queued, so long-polls answer at once.
    pub commands_changed: tokio::sync::Notify,
    pub epoch: AtomicU64,
    pub store_health: StoreHealth,
    pub metrics: Metrics,
    pub audit_key: AuditKey,
    pub checkpoints: PathBuf,
    /// Denied requests audited in the current minute (see `api::MAX_DENIED_AUDITS_PER_MINUTE`).
    pub denied_this_minute: Mutex<(i64, u32)>,
    /// What the round loop has not taken yet, and its wake-up.
    pending: Mutex<Pending>,
    wake_rounds: Condvar,
    /// Woken when the epoch moves (a fence after a restore).
    pub epoch_changed: tokio::sync::Notify,
    /// The highest command id the engine has handed out, after the last round.
    pub command_high_water: AtomicU64,
    /// The `now` of the last round (or of the newest audit record on start): the engine is
    /// never given an earlier one, whatever the wall clock does.
    last_now: Mutex<Timestamp>,
    /// The organisation the rounds run, or why the last change to it was refused.
    organisation: RwLock<OrganisationStatus>,
    /// The organisation the rounds run, whole, for the alarm loop.
    loaded_organisation: RwLock<Option<Arc<crate::organisation::Organisation>>>,
    /// What the alarm loop last evaluated, for the API.
    pub alarms: crate::alarms::Board,
    /// Set to stop the round loop.
    pub stopping: AtomicBool,
    /// Whether the store had never been committed to when the controller opened it.
    fresh_store: bool,
    /// Each running pipeline as people read it, refreshed after every round.
    views: RwLock<BTreeMap<String, PipelineView>>,
    /// The engine's verdicts on recent operator commands, by id (at most [`MAX_VERDICTS`]).
    verdicts: Mutex<std::collections::VecDeque<(String, Verdict)>>,
    /// Woken when a verdict arrives.
    pub verdict_changed: tokio::sync::Notify,
    /// Urgent-mode requests waiting for senior approval (in memory; see the type).
    pub urgent_requests: Mutex<crate::api::operator::UrgentRequests>,
    /// The build loop's configuration and what it reports (see [`crate::builds`]).
    pub builds: crate::builds::Builds,
    /// Held for the life of the controller: the data directory's lock.
    _data_dir: DataDir,
}

/// Inputs waiting for the round loop.
#[derive(Debug, Default)]
struct Pending {
    inputs: Vec<gantry_engine::Input>,
    dirty: BTreeSet<(String, Target)>,
    /// The highest epoch an agent reported having seen, when it asks for a fence.
    fence: Option<u64>,
}

/// The organisation as the API shows it.
#[derive(Clone, Debug, Default, serde::Serialize, schemars::JsonSchema)]
pub struct OrganisationStatus {
    /// Every pipeline running, with its team.
    pub pipelines: BTreeMap<String, String>,
    /// When the running organisation was loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<Timestamp>,
    /// Best-practice warnings of the running organisation.
    pub warnings: Vec<String>,
    /// The last change refused, with every file's diagnostics; the previous organisation runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<crate::organisation::Refused>,
}

/// How many operator verdicts are kept for requests waiting on them: far more than can be in
/// flight within one request's wait.
pub const MAX_VERDICTS: usize = 1024;

/// The engine's verdict on an operator command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted(String),
    Rejected(String),
}

/// One pipeline as people read it (its team, the engine's status, its artifacts), one type
/// each for the server and its clients.
pub use gantry_model::views::{ArtifactView, PipelineView};

/// What [`open`] reports besides the controller.
#[derive(Debug)]
pub struct Opened {
    /// The bootstrap admin token, when this start issued it (also written to its file).
    pub bootstrap_token: Option<PathBuf>,
    pub epoch: u64,
}

/// Opens the data directory and prepares the controller (see the module documentation).
pub fn open(config: &Config, now: Timestamp) -> Result<(Arc<Controller>, Opened), Error> {
    let data_dir = DataDir::open(&config.data_dir)?;
    let mut store = SqliteStore::open(&data_dir.database())?;
    let audit_key = AuditKey::load_or_create(&data_dir.audit_key())?;
    let metrics = Metrics::new();

    let mut tokens = Tokens::default();
    let stored = store.tokens()?;
    for (id, hash, principal, _, revoked_at) in &stored {
        if revoked_at.is_none() {
            let principal: Principal = serde_json::from_str(principal).map_err(|error| {
                Error::Corrupt { what: format!("token {id}"), reason: error.to_string() }
            })?;
            tokens.insert(hash.clone(), id.clone(), principal);
        }
    }
    let bootstrap_token = if stored.is_empty() {
        Some(issue_bootstrap_token(&data_dir, &mut store, &mut tokens, now)?)
    } else {
        None
    };

    let loaded = store.load().map_err(|error| Error::Corrupt {
        what: data_dir.database().display().to_string(),
        reason: error.to_string(),
    })?;
    // The round loop begins the next epoch; until it does, this is the last one stored.
    let epoch = loaded.high_water.epoch;
    let agents = Agents::default();
    let (audit_records, _) = store.audit_head()?;
    let last_audit_at =
        store.audit_page(audit_records.saturating_sub(1), 1)?.pop().map(|(_, r)| r.at);
    let last_now = last_audit_at.map_or(now, |at| at.max(now));
    metrics.epoch.set(epoch as i64);
    metrics.audit_records.set(audit_records as i64);
    metrics.outbox_depth.set(agents.depth() as i64);
    metrics.store_healthy.set(1);

    let controller = Controller {
        store: Mutex::new(store),
        tokens: RwLock::new(tokens),
        agents: Mutex::new(agents),
        commands_changed: tokio::sync::Notify::new(),
        epoch: AtomicU64::new(epoch),
        store_health: StoreHealth::default(),
        metrics,
        audit_key,
        checkpoints: config.checkpoints.clone(),
        denied_this_minute: Mutex::new((0, 0)),
        pending: Mutex::new(Pending::default()),
        wake_rounds: Condvar::new(),
        epoch_changed: tokio::sync::Notify::new(),
        command_high_water: AtomicU64::new(loaded.high_water.command_id),
        last_now: Mutex::new(last_now),
        organisation: RwLock::new(OrganisationStatus::default()),
        loaded_organisation: RwLock::new(None),
        alarms: Default::default(),
        stopping: AtomicBool::new(false),
        fresh_store: loaded.schema_version.is_none(),
        views: RwLock::new(BTreeMap::new()),
        verdicts: Mutex::new(std::collections::VecDeque::new()),
        verdict_changed: tokio::sync::Notify::new(),
        urgent_requests: Mutex::default(),
        builds: crate::builds::Builds::new(config.builds.clone()),
        _data_dir: data_dir,
    };
    controller.store_health.healthy.store(true, Ordering::SeqCst);
    controller.checkpoint(now)?;
    Ok((Arc::new(controller), Opened { bootstrap_token, epoch }))
}

fn issue_bootstrap_token(
    data_dir: &DataDir,
    store: &mut SqliteStore,
    tokens: &mut Tokens,
    now: Timestamp,
) -> Result<PathBuf, Error> {
    let path = data_dir.bootstrap_token();
    if path.exists() {
        return Err(Error::Corrupt {
            what: path.display().to_string(),
            reason: "the database has no tokens but a bootstrap token file exists; it belongs to \
                     another database. Move it away to issue a new one"
                .into(),
        });
    }
    let secret = new_token()?;
    let principal = Principal::Person {
        name: "bootstrap-admin".into(),
        person: "bootstrap-admin".into(),
        grants: vec![Grant { role: Role::Admin, team: None }],
    };
    let id = "t-bootstrap".to_string();
    let hash = token_hash(&secret);
    let principal_json = serde_json::to_string(&principal).expect("a principal serializes");
    let record = audit_record(
        now,
        serde_json::json!({"kind": "token_issued", "by": "gantry server", "token": id, "principal": principal}),
    );
    store.insert_token(&id, &hash, &principal_json, &now.to_string(), &record)?;
    tokens.insert(hash, id, principal);
    crate::data_dir::write_secret_once(&path, format!("{secret}\n").as_bytes())?;
    Ok(path)
}

/// An audit record of something the server (not an engine round) did.
pub fn audit_record(at: Timestamp, body: serde_json::Value) -> AuditRecord {
    AuditRecord { at, bytes: serde_json::to_vec(&body).expect("JSON serializes") }
}

impl Controller {
    /// Signs the chain's head and appends it to the checkpoint file, if it moved since the last
    /// checkpoint there.
    pub fn checkpoint(&self, now: Timestamp) -> Result<(), Error> {
        let (seq, hash) = self.store.lock().expect("store lock").audit_head()?;
        let last = audit::last_checkpoint(&self.checkpoints)?;
        if last.is_some_and(|last| last.seq == seq && last.hash == hex::encode(hash)) {
            return Ok(());
        }
        let checkpoint = self.audit_key.sign(seq, &hash, now.to_string());
        audit::append_checkpoint(&self.checkpoints, &checkpoint)?;
        self.metrics.audit_records.set(seq as i64);
        Ok(())
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::SeqCst);
        self.metrics.epoch.set(epoch as i64);
        self.epoch_changed.notify_waiters();
    }

    /// The `now` for the next round: the wall clock, but never earlier than the last round's.
    pub fn now(&self) -> Timestamp {
        let last = *self.last_now.lock().expect("clock lock");
        Timestamp::now().max(last)
    }

    /// Records the `now` of a committed round and the engine's command high-water mark.
    pub fn note_round(&self, now: Timestamp, command_high_water: u64) {
        let mut last = self.last_now.lock().expect("clock lock");
        *last = (*last).max(now);
        self.command_high_water.fetch_max(command_high_water, Ordering::SeqCst);
    }

    /// Hands inputs to the round loop and wakes it.
    pub fn submit(&self, inputs: impl IntoIterator<Item = gantry_engine::Input>) {
        self.pending.lock().expect("pending lock").inputs.extend(inputs);
        self.wake_rounds.notify_all();
    }

    /// Notes that a box of `(service, target)` reported or registered, and wakes the loop.
    pub fn mark_dirty(&self, service: String, target: Target) {
        self.pending.lock().expect("pending lock").dirty.insert((service, target));
        self.wake_rounds.notify_all();
    }

    /// Every registered box's target needs a fresh snapshot (the engine was rebuilt).
    pub fn mark_all_targets_dirty(&self) {
        let targets: Vec<(String, Target)> = self
            .agents
            .lock()
            .expect("agents lock")
            .boxes()
            .map(|record| (record.service.clone(), record.target.clone()))
            .collect();
        self.pending.lock().expect("pending lock").dirty.extend(targets);
    }

    /// Sleeps until an input arrives or `timeout` passes.
    pub fn wait_for_inputs(&self, timeout: std::time::Duration) {
        let pending = self.pending.lock().expect("pending lock");
        if !pending.inputs.is_empty() || !pending.dirty.is_empty() || pending.fence.is_some() {
            return;
        }
        let _ = self.wake_rounds.wait_timeout(pending, timeout).expect("pending lock");
    }

    pub fn take_inputs(&self) -> Vec<gantry_engine::Input> {
        std::mem::take(&mut self.pending.lock().expect("pending lock").inputs)
    }

    pub fn take_dirty_targets(&self) -> BTreeSet<(String, Target)> {
        std::mem::take(&mut self.pending.lock().expect("pending lock").dirty)
    }

    pub fn take_fence_request(&self) -> Option<u64> {
        self.pending.lock().expect("pending lock").fence.take()
    }

    /// Whether an agent that has seen `seen_epoch` and `seen_command_id` has seen more than
    /// this controller knows (it was restored from a backup).
    pub fn fence_needed(&self, seen_epoch: u64, seen_command_id: u64) -> bool {
        seen_epoch > self.epoch()
            || seen_command_id > self.command_high_water.load(Ordering::SeqCst)
    }

    /// Durably raises the command-id mark past `seen_command_id` and asks the round loop to
    /// restart the engine past `seen_epoch` before anything more is delivered.
    pub fn request_fence(&self, seen_epoch: u64, seen_command_id: u64) -> Result<(), Error> {
        self.store.lock().expect("store lock").raise_command_id(seen_command_id)?;
        self.command_high_water.fetch_max(seen_command_id, Ordering::SeqCst);
        let mut pending = self.pending.lock().expect("pending lock");
        pending.fence = Some(pending.fence.unwrap_or(0).max(seen_epoch));
        drop(pending);
        self.wake_rounds.notify_all();
        tracing::warn!(
            seen_epoch,
            seen_command_id,
            "an agent has seen more than this controller; fencing past it"
        );
        Ok(())
    }

    pub fn pipeline_views(&self) -> BTreeMap<String, PipelineView> {
        self.views.read().expect("views lock").clone()
    }

    pub fn pipeline_view(&self, pipeline: &str) -> Option<PipelineView> {
        self.views.read().expect("views lock").get(pipeline).cloned()
    }

    pub fn set_pipeline_views(&self, views: BTreeMap<String, PipelineView>) {
        *self.views.write().expect("views lock") = views;
    }

    pub fn verdict(&self, id: &str) -> Option<Verdict> {
        let verdicts = self.verdicts.lock().expect("verdicts lock");
        verdicts.iter().find(|(known, _)| known == id).map(|(_, verdict)| verdict.clone())
    }

    pub fn record_verdict(&self, id: String, verdict: Verdict) {
        let mut verdicts = self.verdicts.lock().expect("verdicts lock");
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.pop_front();
        }
        verdicts.push_back((id, verdict));
        drop(verdicts);
        self.verdict_changed.notify_waiters();
    }

    /// Audits a request refused by a handler (separation of duties), in its own transaction.
    pub async fn audit_denied_now(self: &Arc<Self>, who: String, action: &str, reason: &str) {
        self.metrics.denied_requests.inc();
        let record = audit_record(
            Timestamp::now(),
            serde_json::json!({"kind": "request_denied", "by": who, "action": action, "reason": reason}),
        );
        let controller = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            controller.store.lock().expect("store lock").append_audit(&[record])
        })
        .await;
        if !matches!(result, Ok(Ok(_))) {
            tracing::error!("could not audit a refused request");
        }
    }

    /// Issues a token for `principal`, recorded (hashed) with its audit record in one
    /// transaction; returns its id and its secret, which is shown once and kept nowhere.
    pub fn issue_token(
        &self,
        principal: Principal,
        by: &str,
        now: Timestamp,
    ) -> Result<(String, String), Error> {
        let secret = new_token()?;
        let hash = token_hash(&secret);
        let id = format!("t-{}", &hash[..16]);
        let record = audit_record(
            now,
            serde_json::json!({"kind": "token_issued", "by": by, "token": id, "principal": principal}),
        );
        let principal_json = serde_json::to_string(&principal).expect("a principal serializes");
        self.store.lock().expect("store lock").insert_token(
            &id,
            &hash,
            &principal_json,
            &now.to_string(),
            &record,
        )?;
        self.tokens.write().expect("tokens lock").insert(hash, id.clone(), principal);
        Ok((id, secret))
    }

    pub fn fresh_store(&self) -> bool {
        self.fresh_store
    }

    /// Stops the round loop after its current round.
    pub fn stop_rounds(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _pending = self.pending.lock().expect("pending lock");
        self.wake_rounds.notify_all();
    }

    /// The organisation the rounds run, whole (`None` before one loaded).
    pub fn loaded_organisation(&self) -> Option<Arc<crate::organisation::Organisation>> {
        self.loaded_organisation.read().expect("organisation lock").clone()
    }

    pub fn organisation(&self) -> OrganisationStatus {
        self.organisation.read().expect("organisation lock").clone()
    }

    /// The team of a running pipeline.
    pub fn team_of(&self, pipeline: &str) -> Option<String> {
        // The engine's plans answer from the first round on; the organisation once it loaded.
        if let Some(view) = self.views.read().expect("views lock").get(pipeline) {
            return Some(view.team.clone());
        }
        self.organisation.read().expect("organisation lock").pipelines.get(pipeline).cloned()
    }

    /// Records a loaded organisation, or a refused change to it.
    pub fn set_organisation(
        &self,
        result: Result<crate::organisation::Organisation, crate::organisation::Refused>,
    ) {
        let mut status = self.organisation.write().expect("organisation lock");
        match result {
            Ok(organisation) => {
                self.builds.set_specs(organisation.specs.clone());
                *status = OrganisationStatus {
                    pipelines: organisation
                        .plans
                        .iter()
                        .map(|(name, plan)| (name.clone(), plan.team.clone()))
                        .collect(),
                    loaded_at: Some(Timestamp::now()),
                    warnings: organisation.warnings.clone(),
                    refused: None,
                };
                *self.loaded_organisation.write().expect("organisation lock") =
                    Some(Arc::new(organisation));
            }
            Err(refused) => status.refused = Some(refused),
        }
    }
}

pub use crate::tls::plain_http_allowed;

/// Gives the memory freed after a start or an organisation load back to the operating system.
/// Both build everything at once (every record parsed or written, every pipeline file read)
/// and drop most of it again; glibc's allocator would otherwise keep the freed pages resident
/// for good, about as much again as the controller uses.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free pages of the allocator's own heaps.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The path a data directory's bootstrap token is written to.
pub fn bootstrap_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bootstrap-admin.token")
}

/// The round loop's thread; stopped and joined when dropped.
pub struct RoundsThread {
    controller: Arc<Controller>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RoundsThread {
    fn drop(&mut self) {
        self.controller.stop_rounds();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the round loop (see [`crate::rounds`]) on a thread of its own, and returns once the
/// engine resumed from the store under a new epoch.
pub fn start_rounds(
    controller: Arc<Controller>,
    organisation: Option<PathBuf>,
) -> Result<RoundsThread, Error> {
    let (started, resumed) = std::sync::mpsc::channel();
    let thread = {
        let controller = controller.clone();
        std::thread::Builder::new()
            .name("rounds".into())
            .spawn(move || {
                crate::rounds::run(controller, crate::rounds::RoundConfig { organisation }, started)
            })
            .map_err(|source| Error::Io { path: "the round thread".into(), source })?
    };
    let rounds = RoundsThread { controller, thread: Some(thread) };
    // Nothing is served before the engine resumed under its new epoch.
    if resumed.recv().is_err() {
        let reason = rounds.controller.store_health.last_error().unwrap_or_default();
        return Err(Error::Corrupt { what: "the engine's records".into(), reason });
    }
    Ok(rounds)
}

/// Serves the API on `listener` (with the round loop `rounds` running, see [`start_rounds`])
/// until `shutdown` resolves, checkpointing the audit chain every
/// [`audit::CHECKPOINT_INTERVAL`] and once more on the way out.
pub async fn serve(
    controller: Arc<Controller>,
    listener: tokio::net::TcpListener,
    rounds: RoundsThread,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_on(controller, listener, rounds, shutdown).await
}

/// [`serve`] over HTTPS: every connection on `listener` is served through TLS with `tls`
/// (see [`crate::tls::TlsFiles::server_config`]).
pub async fn serve_tls(
    controller: Arc<Controller>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    rounds: RoundsThread,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = crate::tls::TlsListener::new(listener, tls)
        .map_err(|source| Error::Io { path: "listener".into(), source })?;
    serve_on(controller, listener, rounds, shutdown).await
}

async fn serve_on<L: axum::serve::Listener<Addr = SocketAddr>>(
    controller: Arc<Controller>,
    listener: L,
    rounds: RoundsThread,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let address =
        listener.local_addr().map_err(|source| Error::Io { path: "listener".into(), source })?;
    let checkpointer = {
        let controller = controller.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(audit::CHECKPOINT_INTERVAL);
            loop {
                interval.tick().await;
                let controller = controller.clone();
                let result =
                    tokio::task::spawn_blocking(move || controller.checkpoint(Timestamp::now()))
                        .await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "audit checkpoint failed"),
                    Err(error) => tracing::error!(%error, "audit checkpoint task failed"),
                }
            }
        })
    };
    let builder = tokio::spawn(crate::builds::run(controller.clone()));
    tracing::info!(%address, epoch = controller.epoch(), "serving");
    let served = axum::serve(listener, crate::api::router(controller.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    checkpointer.abort();
    builder.abort();
    let _ = tokio::task::spawn_blocking(move || drop(rounds)).await;
    let final_checkpoint = {
        let controller = controller.clone();
        tokio::task::spawn_blocking(move || controller.checkpoint(Timestamp::now())).await
    };
    served.map_err(|source| Error::Io { path: address.to_string().into(), source })?;
    match final_checkpoint {
        Ok(result) => result,
        Err(error) => {
            Err(Error::Corrupt { what: "the final checkpoint".into(), reason: error.to_string() })
        }
    }
}

/// Replaces the database of `data_dir` with the backup `from`; the server must be stopped (this
/// takes the data directory's lock). The checkpoint file of the replaced history is moved aside,
/// kept as evidence (its heads are past the backup's chain); the next start checkpoints the
/// restored chain afresh, and begins an epoch past every one stored and reported.
pub fn restore(data_dir: &Path, from: &Path, checkpoints: &Path) -> Result<Option<PathBuf>, Error> {
    let dir = DataDir::open(data_dir)?;
    let backup = SqliteStore::open_read_only(from)?;
    let staged = dir.root().join("gantry.db.restoring");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if staged.exists() {
        std::fs::remove_file(&staged).map_err(io(&staged))?;
    }
    crate::sqlite::backup(&backup, &staged)?;
    drop(backup);
    let database = dir.database();
    // The old database's write-ahead log must not be replayed into the restored one.
    for suffix in ["-wal", "-shm"] {
        let mut name = database.clone().into_os_string();
        name.push(suffix);
        let path = PathBuf::from(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    std::fs::rename(&staged, &database).map_err(io(&database))?;
    std::fs::File::open(dir.root()).and_then(|d| d.sync_all()).map_err(io(dir.root()))?;
    if !checkpoints.exists() {
        return Ok(None);
    }
    let mut aside = checkpoints.as_os_str().to_os_string();
    aside.push(format!(".before-restore-{}", Timestamp::now().as_second()));
    let aside = PathBuf::from(aside);
    std::fs::rename(checkpoints, &aside).map_err(io(checkpoints))?;
    Ok(Some(aside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_back_behind_the_last_round() {
        let temp = tempfile::tempdir().unwrap();
        let config = Config::new(temp.path().join("data"), "127.0.0.1:0".parse().unwrap());
        let now = Timestamp::now();
        let later = now + jiff::SignedDuration::from_hours(1);
        {
            let (controller, _) = open(&config, now).unwrap();
            let round = gantry_store::Round {
                schema_version: 1,
                audit: vec![AuditRecord { at: later, bytes: b"{}".to_vec() }],
                ..Default::default()
            };
            controller.store.lock().unwrap().commit(round).unwrap();
        }
        // The wall clock went back an hour (or the last round ran on a clock that was ahead).
        let (controller, _) = open(&config, now).unwrap();
        assert!(controller.now() >= later, "{} < {later}", controller.now());
    }
}
