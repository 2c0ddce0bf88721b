//! Opening a data directory and serving it: the controller's shared state and its start-up.
//!
//! Start-up, in order: lock the data directory; open (migrate or refuse) the database; load the
//! audit key; issue the bootstrap admin token if no token exists; load the store and queue its
//! undelivered outbox for the agents; begin a new epoch past every one stored. Agents that report
//! a higher epoch or command id than the controller knows (it was restored from a backup) move
//! the epoch past theirs before anything else is sent to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use gantry_model::Timestamp;
use gantry_model::agent::AgentCommand;
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
}

impl Config {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Config {
        let checkpoints = audit::default_checkpoints(&data_dir);
        Config { data_dir, checkpoints, listen }
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
    /// Held for the life of the controller: the data directory's lock.
    _data_dir: DataDir,
}

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
    let mut agents = Agents::default();
    for command in &loaded.outbox {
        match serde_json::from_slice::<AgentCommand>(&command.bytes) {
            Ok(agent_command) => agents.queue(agent_command),
            Err(error) => tracing::warn!(
                command = command.id,
                destination = %command.destination,
                %error,
                "outbox command is not an agent command; left for its own consumer"
            ),
        }
    }
    let epoch = store.begin_epoch(0).map_err(|error| Error::Corrupt {
        what: data_dir.database().display().to_string(),
        reason: error.to_string(),
    })?;
    let (audit_records, _) = store.audit_head()?;
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

    /// Moves the epoch past `seen_epoch` and the command-id high-water mark past
    /// `seen_command_id` when an agent has seen more than this controller knows (it was
    /// restored from a backup). Durable before it returns.
    pub fn fence_past(&self, seen_epoch: u64, seen_command_id: u64) -> Result<u64, Error> {
        let mut store = self.store.lock().expect("store lock");
        let mut epoch = self.epoch();
        if seen_epoch >= epoch {
            epoch = store.begin_epoch(seen_epoch).map_err(|error| Error::Corrupt {
                what: "the epoch".into(),
                reason: error.to_string(),
            })?;
            self.epoch.store(epoch, Ordering::SeqCst);
            self.metrics.epoch.set(epoch as i64);
            tracing::warn!(epoch, seen_epoch, "an agent had seen a newer epoch; moved past it");
        }
        store.raise_command_id(seen_command_id)?;
        Ok(epoch)
    }
}

/// Whether `address` may be served over plain HTTP.
pub fn plain_http_allowed(address: &SocketAddr) -> bool {
    address.ip().is_loopback()
}

/// The path a data directory's bootstrap token is written to.
pub fn bootstrap_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bootstrap-admin.token")
}

/// Serves the API on `listener` until `shutdown` resolves, checkpointing the audit chain every
/// [`audit::CHECKPOINT_INTERVAL`] and once more on the way out.
pub async fn serve(
    controller: Arc<Controller>,
    listener: tokio::net::TcpListener,
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
    tracing::info!(%address, epoch = controller.epoch(), "serving");
    let served = axum::serve(listener, crate::api::router(controller.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    checkpointer.abort();
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
