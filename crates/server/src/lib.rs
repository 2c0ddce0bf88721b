//! The Gantry controller: the process that makes the engine's decisions real and durable, for
//! people and for the agents on every box.
//!
//! Module map:
//! - [`data_dir`]: the data directory and the lock that keeps a second server out of it;
//! - [`sqlite`]: the embedded store — `gantry_store::Store` on SQLite, with the audit chain
//!   and the token table beside the engine's records;
//! - [`builds`]: the build loop — each pipeline's source polled, new heads built as the
//!   trusted build service and handed to the engine; the signed block list republished;
//! - [`audit`]: the hash chain, signed checkpoints outside the database, `gantry audit verify`;
//! - [`auth`]: tokens (stored hashed), principals, roles scoped per team, the permission each
//!   route needs, and separation of duties;
//! - [`agents`]: what the controller knows of each box between rounds — registrations, the
//!   latest whole-box report, the commands waiting to be long-polled;
//! - [`alarms`]: the alarm loop — scrapes every box's metrics, evaluates every pipeline's
//!   alarms and hands the engine their states and bake data points;
//! - [`api`]: the HTTP API under `/api/v1`, its OpenAPI 3.1 document and its limits;
//! - [`metrics`]: the controller's own Prometheus metrics;
//! - [`organisation`]: pipelines as code, loaded from a directory whole or not at all;
//! - [`rounds`]: the round loop — the engine on the real clock through the round driver;
//! - [`server`]: opening a data directory and serving it;
//! - [`tls`]: HTTPS from a certificate and key, required beyond loopback.
//!
//! Architecture invariant: nothing a round decided reaches an agent before that round's commit
//! returned; a failed commit stops command delivery until one succeeds.
//!
//! Architecture invariant: every route names the permission it needs, and the router refuses a
//! request before its handler runs unless the caller's token grants that permission for the
//! object it names (deny by default).

pub mod agents;
pub mod alarms;
pub mod api;
pub mod audit;
pub mod auth;
pub mod builds;
pub mod data_dir;
pub mod metrics;
pub mod organisation;
pub mod rounds;
pub mod server;
pub mod sqlite;
pub mod tls;

use std::io::Read;
use std::path::PathBuf;

pub use data_dir::DataDir;
pub use sqlite::SqliteStore;

/// Why the controller could not do something with its data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{}: another gantry server holds this data directory; stop it first (two servers must \
         never share one)",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("the database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "{}: the database has schema version {found}, written by a newer gantry; this gantry \
         understands up to {supported}. Run the newer gantry, or restore a backup taken before \
         the upgrade",
        path.display()
    )]
    SchemaTooNew { path: PathBuf, found: u32, supported: u32 },
    #[error("{}: migrating the database from schema version {from} failed: {reason}", path.display())]
    Migration { path: PathBuf, from: u32, reason: String },
    #[error("{what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl Error {
    /// The store contract's error for this one.
    pub fn into_store(self) -> gantry_store::Error {
        match self {
            Error::Corrupt { what, reason } => gantry_store::Error::Corrupt { key: what, reason },
            Error::Locked { .. } => gantry_store::Error::Fenced { reason: self.to_string() },
            other => gantry_store::Error::Unavailable { reason: other.to_string() },
        }
    }
}

/// 32 bytes from the operating system's random source (tokens, keys).
pub fn random_bytes() -> Result<[u8; 32], Error> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|source| Error::Io { path: "/dev/urandom".into(), source })?;
    Ok(bytes)
}
