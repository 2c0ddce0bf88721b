//! Gantry's durable state behind one narrow, synchronous trait: [`Store`].
//!
//! The controller decides durably, then acts. Each round of the round driver ends in exactly one
//! [`Store::commit`]: the engine records that changed, the commands to send (the *outbox*) and
//! the audit records of the round, all or nothing. Only after the commit returns may a command
//! leave the process; once the transport has handed it on, the driver calls
//! [`Store::mark_delivered`]. A controller that crashes anywhere in between loads the same
//! records and the undelivered outbox on start ([`Store::load`]) and sends those commands again;
//! commands carry an id and the controller's fencing epoch, and agents apply an id at most once,
//! so sending again is always safe.
//!
//! What a store holds is opaque bytes: it never interprets an engine record, a command or an
//! audit record, so the engine can change its records without touching any store, and a store
//! can be written in any language against this contract. Each committed round carries the
//! *schema version* of the records it writes; the store keeps the last one so a newer controller
//! can migrate or refuse old records with a clear error.
//!
//! The contract every implementation keeps (the in-memory one here, SQLite in the server, and
//! PostgreSQL next):
//!
//! - **Atomic rounds.** After a crash at any point, either everything a `commit` carried is
//!   there or none of it is.
//! - **Keys.** A record is named by its [`RecordKey`]: a [`RecordKind`] and a string. A
//!   [`Change::Put`] replaces a record's bytes whole; a [`Change::Delete`] removes it (deleting a
//!   missing record is not an error).
//! - **Outbox.** Commands are keyed by their id. A command committed again with an id already in
//!   the outbox (a re-send, perhaps under a newer epoch) replaces the earlier one and is
//!   undelivered again. [`Store::load`] returns every undelivered command in id order; delivered
//!   ones may be forgotten.
//! - **Audit.** Audit records are appended in the order given, never changed; the store numbers
//!   them from 1 so the server can chain their hashes.
//! - **High-water marks.** The store keeps the highest fencing epoch and the highest command id
//!   it was ever given, and never lets either go down, so a restart never reuses them.
//!   [`Store::begin_epoch`] durably moves the epoch past both what is stored and what agents
//!   report (a restored backup knows less than the agents do).
//! - **Failure.** A failed call changed nothing durable; the caller stops issuing commands until
//!   a commit succeeds again.
//!
//! Architecture invariant: nothing a round decided reaches an agent before that round's commit
//! returned `Ok`.

pub mod conformance;
mod memory;

use std::collections::BTreeMap;
use std::fmt;

pub use gantry_model::Timestamp;
pub use memory::{MemoryStore, Stats};

/// The kinds of record the engine's state is split into. Each kind has its own key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// The one organisation-wide record (key `""`): epoch, command counter, topology time
    /// zones, content blocklist, recent operator command ids.
    Global,
    /// One per pipeline, keyed by the pipeline's name: its artifacts, stages, holds, overrides,
    /// urgent mode, and the plan version it runs.
    Pipeline,
    /// One per target, keyed by the target (`prod/us-east-1/use1-az1`), shared by every pipeline
    /// that deploys there: per pipeline, each box's outstanding and last command, known-good
    /// artifacts, rollback and back-offs.
    Target,
    /// One per plan version, keyed `pipeline@version`. Written once; a pipeline record names the
    /// version it runs, so a plan is never copied into every pipeline write.
    Plan,
}

impl RecordKind {
    /// Every kind, in key order.
    pub const ALL: [RecordKind; 4] =
        [RecordKind::Global, RecordKind::Pipeline, RecordKind::Target, RecordKind::Plan];

    /// The kind's stable name, for stores that keep it as text.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Global => "global",
            RecordKind::Pipeline => "pipeline",
            RecordKind::Target => "target",
            RecordKind::Plan => "plan",
        }
    }

    /// The kind named `name` by [`RecordKind::as_str`].
    pub fn parse(name: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record's name: its kind and its key within the kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    pub kind: RecordKind,
    pub key: String,
}

impl RecordKey {
    pub fn new(kind: RecordKind, key: impl Into<String>) -> RecordKey {
        RecordKey { kind, key: key.into() }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.key)
    }
}

/// One change to one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The record's new bytes, whole.
    Put { key: RecordKey, bytes: Vec<u8> },
    /// The record no longer exists (a pipeline removed, a target no pipeline deploys).
    Delete { key: RecordKey },
}

impl Change {
    pub fn key(&self) -> &RecordKey {
        match self {
            Change::Put { key, .. } | Change::Delete { key } => key,
        }
    }
}

/// A command waiting to be delivered: a box command or a test-gate request, serialized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxCommand {
    /// The command's id: unique for ever across every epoch, the agent's key for applying it at
    /// most once, and the outbox's key.
    pub id: u64,
    /// The fencing epoch of the controller that sent it; agents refuse epochs lower than the
    /// highest they have seen.
    pub epoch: u64,
    /// Who receives it: a box id, or `test-runner` for a test gate. A server long-polling for a
    /// box reads the commands of its destination.
    pub destination: String,
    /// The command itself, as the engine serialized it.
    pub bytes: Vec<u8>,
}

/// One audit record: a decision, a command, an operator's request and its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// When the round that made it ran (the engine's `now`).
    pub at: Timestamp,
    /// The record, serialized (the engine's event or command).
    pub bytes: Vec<u8>,
}

/// The highest epoch and command id ever handed out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HighWater {
    pub epoch: u64,
    pub command_id: u64,
}

impl HighWater {
    /// The larger of each mark.
    pub fn max(self, other: HighWater) -> HighWater {
        HighWater {
            epoch: self.epoch.max(other.epoch),
            command_id: self.command_id.max(other.command_id),
        }
    }
}

/// Everything one round writes, committed at once by [`Store::commit`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The schema version of the records in `changes` (the engine's `SCHEMA_VERSION`).
    pub schema_version: u32,
    /// The records that changed, at most one change per key.
    pub changes: Vec<Change>,
    /// The commands the round sends, undelivered until [`Store::mark_delivered`].
    pub outbox: Vec<OutboxCommand>,
    /// The round's audit records, in order.
    pub audit: Vec<AuditRecord>,
    /// The epoch and highest command id after the round; the store keeps the maximum of these
    /// and what it had.
    pub high_water: HighWater,
}

/// What a store holds, as [`Store::load`] returns it on start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The schema version of the last committed round; `None` for a store never committed to.
    pub schema_version: Option<u32>,
    pub records: BTreeMap<RecordKey, Vec<u8>>,
    /// Commands committed but not marked delivered, in id order.
    pub outbox: Vec<OutboxCommand>,
    pub high_water: HighWater,
    /// How many audit records the store holds (the number of the last one).
    pub audit_records: u64,
}

/// Why a store call failed. A failed call changed nothing durable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backing store refused or could not complete the call (disk full, I/O error, lost
    /// connection). The controller stops issuing commands and says so in its health.
    #[error("the store is unavailable: {reason}")]
    Unavailable { reason: String },
    /// Stored bytes cannot be read back (corruption, a truncated file).
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    /// Another controller holds the store (a newer epoch, or the data directory's lock).
    #[error("another controller holds the store: {reason}")]
    Fenced { reason: String },
    /// A backend's own error, kept whole for its message and source.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// Durable state for one controller: narrow and synchronous (a server calls it from a blocking
/// thread). See the module documentation for the contract every implementation keeps.
pub trait Store: Send {
    /// Everything stored: the records, the undelivered outbox and the high-water marks. Called
    /// once on start, before anything else.
    fn load(&mut self) -> Result<Loaded, Error>;

    /// Durably starts a new fencing epoch and returns it: one more than the largest of the
    /// stored epoch and `seen_by_agents` (the highest epoch any agent reports having seen).
    fn begin_epoch(&mut self, seen_by_agents: u64) -> Result<u64, Error>;

    /// Commits one round: its record changes, outbox commands, audit records and high-water
    /// marks, all or nothing.
    fn commit(&mut self, round: Round) -> Result<(), Error>;

    /// Marks outbox commands delivered (handed to the transport). Ids not in the outbox are
    /// ignored: a command may have been replaced or forgotten meanwhile.
    fn mark_delivered(&mut self, ids: &[u64]) -> Result<(), Error>;
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn load(&mut self) -> Result<Loaded, Error> {
        (**self).load()
    }
    fn begin_epoch(&mut self, seen_by_agents: u64) -> Result<u64, Error> {
        (**self).begin_epoch(seen_by_agents)
    }
    fn commit(&mut self, round: Round) -> Result<(), Error> {
        (**self).commit(round)
    }
    fn mark_delivered(&mut self, ids: &[u64]) -> Result<(), Error> {
        (**self).mark_delivered(ids)
    }
}
